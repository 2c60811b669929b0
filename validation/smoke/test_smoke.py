"""The smoke gate: the plan's "does it deploy" checks, in order, against one target.

    nox -s smoke                                   # container target (build + run), else process
    nox -s smoke -- --target process
    nox -s smoke -- --base-url https://your-app    # url target: image checks skipped with reason

Each test records its criteria (validation/criteria.toml) through the `gate` fixture; the
report is reports/smoke/report.md.
"""

from __future__ import annotations

import pytest

from validation import checks
from validation.checks import effects, ui_effects
from validation.targets import image_size_bytes

pytestmark = pytest.mark.smoke
TRAINED = pytest.StashKey[dict]()  # the job test_training_preset finished: the effect checks after it use its run
TRAIN_SEED = 42

IMAGE_CONFIG = ["image.exposed_port", "image.entrypoint_exec", "image.healthcheck"]
IMAGE_FILES = ["image.compilers", "image.excluded_paths"]


# --- image (container target only; `nox -s image` runs just these: -m image) ------------------


@pytest.mark.image
def test_image_builds(gate, target_kind, request):
    gate.require("image.build_time")
    image = request.getfixturevalue("image")
    if not image["built"]:
        gate.skip("image.build_time", f"prebuilt image {image['tag']} given with --image: not built here")
    gate.measure("image.build_time", round(image["build_seconds"], 1), detail=f"docker build -t {image['tag']} .")


@pytest.mark.image
def test_image_size(gate, target_kind, request):
    gate.require("image.size")
    image = request.getfixturevalue("image")
    size = image_size_bytes(image["attrs"])
    gate.measure("image.size", round(size / 1e9, 3), detail=f"{size / 2**20:.0f} MiB ({image['tag']})")


@pytest.mark.image
def test_image_config(gate, target_kind, request):
    gate.require(IMAGE_CONFIG)
    checks.image_config(gate, request.getfixturevalue("image")["attrs"])


@pytest.mark.image
def test_image_server_runs_as_non_root_on_root_owned_volumes(gate, target_kind, request):
    gate.require("image.user")
    # The image started as it ships (as root) with root-owned volumes, as Fly.io and Railway mount them:
    # run.sh must hand them over and drop to `app` before the server starts.
    image = request.getfixturevalue("image")
    with image["started"]() as (exec_sh, logs):
        checks.server_user(gate, exec_sh, logs, where=f"{image['tag']} started with root-owned {', '.join(image['volumes'])}")


@pytest.mark.image
def test_image_files(gate, target_kind, request):
    gate.require(IMAGE_FILES)
    # In a throwaway container of the image: the image as built, no volumes, no runtime state.
    checks.image_files(gate, request.getfixturevalue("image")["run_sh"])


# --- start-up and probes ---------------------------------------------------------------------


def test_startup_health_time(gate, target):
    checks.startup(gate, target.health_seconds)


def test_health(gate, http):
    checks.health(http, gate)


def test_health_reports_the_expected_build(gate, http, expected_build):
    checks.build(http, gate, *expected_build)


def test_ready(gate, app_ready):
    checks.ready(gate, app_ready, app_ready["since_start"])


def test_ready_is_truthful(gate, http, require_ready):
    checks.ready_truthful(http, gate)


def test_idle_memory(gate, target, require_ready):
    checks.memory(gate, target.resource_sample())


def test_memory_growth(gate, target, http, require_ready):
    checks.memory_growth(http, gate, target.resource_sample)


def test_ui_served(gate, http):
    elems, apis = checks.ui_names()
    checks.ui(http, gate, elems, apis)


def test_metrics(gate, http):
    checks.metrics(http, gate)


# --- actions ---------------------------------------------------------------------------------


def test_model_load(gate, http, require_ready):
    checks.model_load(http, gate, gate.param("model"))


def test_evaluate(gate, http, require_ready):
    checks.evaluate(http, gate)


def test_gradio_api_evaluate(gate, target, http, auth, require_ready):
    _, apis = checks.ui_names()
    api = next(a for a in apis if a == "evaluate" or a.endswith("evaluate"))
    expected = http.post("/api/evaluate", json={"text": checks.HARMFUL_TEXT, "mode": "rules"}, timeout=30).json()
    checks.gradio_evaluate(target.base_url, gate, api, expected, auth=auth)


def test_evaluate_modes(gate, http, require_ready):
    effects.evaluate_mode(http, gate)


def test_generate(gate, http, require_ready):
    checks.generate(http, gate, int(gate.param("generate_max_new_tokens")))


def test_generate_parameters(gate, http, require_ready):
    for check in (effects.generate_prompt, effects.generate_max_new_tokens, effects.generate_seed,
                  effects.generate_temperature, effects.isolation):
        check(http, gate)
    gate.raise_pending()


def test_critique_parameters(gate, http, require_ready):
    effects.critique(http, gate)
    gate.raise_pending()


def test_model_load_changes_the_model(gate, http, require_ready):
    gate.require("effect.load_model")
    model = gate.param("model")
    if model == "tiny":
        gate.skip("effect.load_model", "the default model is tiny: loading the real model here would build it")
    effects.load_model(http, gate, other="tiny")
    gate.raise_pending()


def test_training_cancel(gate, http, require_ready):
    checks.train_cancel(http, gate, str(gate.param("train_preset")))


def test_ui_controls_reach_their_actions(gate, target, http, auth, require_ready):
    with ui_effects.gradio(target.base_url, gate, "effect.ui_generate", auth=auth) as client:
        ui_effects.generate(client, http, gate)
        ui_effects.evaluate_mode(client, gate)
        ui_effects.critique(client, gate)
        ui_effects.training(client, http, gate)
        if not gate.criteria["effect.ui_model_select"].applies_to(target.kind):
            gate.record_skip("effect.ui_model_select", f"does not apply to the {target.kind} target")
        elif gate.param("model") == "tiny":
            gate.record_skip("effect.ui_model_select", "the default model is tiny: loading the real model here would build it")
        else:
            ui_effects.model_select(client, http, gate)
    gate.raise_pending()


def test_training_presets_plan_differently(gate, http, require_ready):
    effects.train_preset(http, gate, str(gate.param("train_preset")))
    gate.raise_pending()


def test_training_preset(gate, http, require_ready, request):
    preset = gate.param("train_preset")
    request.session.stash[TRAINED] = checks.training(http, gate, preset, seed=TRAIN_SEED, summary=True)


def _trained(gate, request, cids: list[str]) -> dict:
    job = request.session.stash.get(TRAINED, None)
    if not job or job.get("state") != "succeeded":
        gate.skip(cids, "no succeeded training run from test_training_preset")
    return job


def test_training_seed(gate, http, require_ready, request):
    job = _trained(gate, request, ["effect.train_seed"])
    effects.train_seed(http, gate, job, TRAIN_SEED)
    gate.raise_pending()


def test_generate_compare(gate, http, require_ready, request):
    _trained(gate, request, ["effect.generate_compare"])
    effects.generate_compare(http, gate)
    gate.raise_pending()


def test_ui_impact_limit(gate, target, http, auth, require_ready, request):
    _trained(gate, request, ["effect.ui_impact_limit"])
    with ui_effects.gradio(target.base_url, gate, "effect.ui_impact_limit", auth=auth) as client:
        ui_effects.impact_limit(client, gate)
    gate.raise_pending()


def test_impact_parameters(gate, http, require_ready, request):
    _trained(gate, request, ["effect.impact_limit", "effect.impact_max_new_tokens", "effect.impact_seed"])
    effects.impact(http, gate)
    gate.raise_pending()


def test_runs_list_matches_the_volume(gate, http, target, require_ready):
    gate.require("train.runs_on_volume")
    checks.runs_on_volume(http, gate, target.checkpoint_dir)
    gate.raise_pending()


# --- last: the log after everything above ran --------------------------------------------------


def test_no_error_lines_in_log(gate, target):
    if target.kind == "url":
        gate.skip("container.log_errors", "url target: the app's log is not reachable from here")
    checks.log_errors(gate, target.logs(), source=f"{target.kind} log")
