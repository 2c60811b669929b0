import pytest

from app import config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in [*config.ENV_VARS.values(), *config.EXTRA_ENV_VARS]:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_defaults_bind_localhost_on_7860():
    s = config.load()
    assert (s.host, s.port, s.default_model, s.auth) == ("127.0.0.1", 7860, "smollm2", None)


def test_port_injected_by_the_platform_wins(clean_env):
    clean_env.setenv("GRADIO_SERVER_PORT", "7000")
    clean_env.setenv("PORT", "8080")
    assert config.load().port == 8080


@pytest.mark.parametrize("var, value, named", [
    ("GRADIO_SERVER_PORT", "http", "GRADIO_SERVER_PORT"),
    ("PORT", "70000", "PORT"),
    ("PRELOAD_MODEL", "maybe", "PRELOAD_MODEL"),
    ("DEVICE", "tpu", "DEVICE"),
    ("ENGINE", "vllm", "ENGINE"),
    ("BASIC_AUTH", "nocolon", "BASIC_AUTH"),
])
def test_bad_values_name_the_variable(clean_env, var, value, named):
    clean_env.setenv(var, value)
    with pytest.raises(config.SettingsError, match=named):
        config.load()


def test_basic_auth_splits_user_and_password(clean_env):
    clean_env.setenv("BASIC_AUTH", "alice:s3cret:x")
    assert config.load().auth == ("alice", "s3cret:x")


@pytest.mark.parametrize("cores, env, threads", [(2, None, 1), (1, None, 1), (4, None, 3), (2, "2", 2)])
def test_compute_threads_leave_a_core_for_the_server_unless_set(clean_env, cores, env, threads):
    clean_env.setattr(config.os, "sched_getaffinity", lambda pid: set(range(cores)))
    if env:
        clean_env.setenv("TORCH_THREADS", env)
    assert config.load().compute_threads == threads
