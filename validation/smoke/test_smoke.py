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
from validation.targets import image_size_bytes

pytestmark = pytest.mark.smoke

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
    checks.model_load(http, gate, gate.param("model", "smollm2"))


def test_evaluate(gate, http, require_ready):
    checks.evaluate(http, gate)


def test_gradio_api_evaluate(gate, target, http, auth, require_ready):
    _, apis = checks.ui_names()
    api = next(a for a in apis if a == "evaluate" or a.endswith("evaluate"))
    expected = http.post("/api/evaluate", json={"text": checks.HARMFUL_TEXT, "mode": "rules"}, timeout=30).json()
    checks.gradio_evaluate(target.base_url, gate, api, expected, auth=auth)


def test_generate(gate, http, require_ready):
    checks.generate(http, gate, int(gate.param("generate_max_new_tokens")))


def test_training_cancel(gate, http, require_ready):
    checks.train_cancel(http, gate, str(gate.param("train_preset", "smoke")))


def test_training_preset(gate, http, require_ready):
    preset = gate.param("train_preset", "smoke")
    checks.training(http, gate, preset, summary=True)


# --- last: the log after everything above ran --------------------------------------------------


def test_no_error_lines_in_log(gate, target):
    if target.kind == "url":
        gate.skip("container.log_errors", "url target: the app's log is not reachable from here")
    checks.log_errors(gate, target.logs(), source=f"{target.kind} log")
