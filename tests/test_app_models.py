
import pytest

from app import models
from app.errors import ApiError


@pytest.mark.parametrize("name, status", [
    ("../outside", 403), ("/etc", 403), ("~/x", 403), ("bad name!", 404), ("a/b/c", 404),
    ("no-such-org/no-such-model-xyz", 404),
])
def test_bad_model_names_get_a_clear_error(settings, name, status):
    with pytest.raises(ApiError) as err:
        models.load(name, settings)
    assert err.value.status == status and err.value.field == "model"


def test_folder_inside_allowed_dirs_loads(settings, tiny, tmp_path):
    folder = tmp_path / "models" / "mine"
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    lm = models.load(str(folder), settings)
    assert lm.parameters == tiny.parameters


def test_tiny_is_built_once_and_reports_its_size(settings, tiny):
    assert tiny.name == "tiny" and 500_000 < tiny.parameters < 5_000_000
    assert models._is_built(settings.model_cache_dir / "tiny", "tiny")
    assert not tiny.model.training


def test_generation_is_seeded_and_bounded(tiny):
    kw = dict(max_new_tokens=12, temperature=0.9)
    a = models.generate(tiny, "Human: hello\nAssistant:", seed=3, **kw)
    assert a == models.generate(tiny, "Human: hello\nAssistant:", seed=3, **kw)
    assert len(tiny.tokenizer(a)["input_ids"]) <= 13


def test_generation_stops_on_cancel(tiny):
    with pytest.raises(models.Cancelled):
        models.generate(tiny, "Human: hi\nAssistant:", max_new_tokens=50, temperature=1.0, seed=0,
                        should_stop=lambda: True)


def test_hub_ids_are_local_only_unless_downloads_are_allowed(settings):
    assert models.resolve("gpt2", settings) == ("gpt2", True)
    assert models.resolve("gpt2", settings.model_copy(update=dict(allow_downloads=True))) == ("gpt2", False)
