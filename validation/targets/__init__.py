"""Where the app under test runs: `container` | `process` | `url`.

    with start_target(kind, base_url=..., image=..., env=..., ...) as target:   # the plugin's `target` fixture
    with ContainerTarget(tag, ...) | ProcessTarget(...) | UrlTarget(url, ...) as target:   # the same, by hand
    target = ProcessTarget(...).start(); ...; target.stop()                # without `with`
    target.kind, target.base_url, target.logs(), target.log_tail(60), target.stop()
    target.started_at                      # time.monotonic() when the start was issued (None: url)
    target.health_seconds                  # start -> first /health 200 (None: url)
    target.resource_sample(cpu=False)      # {"memory_bytes", "cpu_percent"?, "source"} from outside
    target.describe()                      # a dict for the report

container (ContainerTarget): testcontainers DockerImage build (streamed log, BuildFailed with the
    log on error) or a prebuilt --image; DockerContainer run with the plan's volumes (tmp dirs on
    /app/demo/checkpoints and /app/demo/logs) and an 8 GB memory limit, HttpWaitStrategy on
    /health (stops early when the container exits). Extras: .container (docker-py Container),
    .container_id, .image_attrs (docker image inspect), .container_attrs, .exec(cmd) (in the running
    container), .checkpoint_dir / .log_dir (host paths), .docker (docker-py client), .build_seconds.
process (ProcessTarget): `python -m app` on a free port, tmp checkpoint/log dirs, log captured.
    Extras: .pid, .process (psutil.Process), .checkpoint_dir / .log_dir.
url (UrlTarget): nothing started; memory from the app's /metrics.

Modules: base (Target, errors, registry, wait_http), url, process, container, image (build),
engine (Docker client, sweep, one-off runs, Ryuk), resources (memory/CPU readers shared with the
perf sampler). Everything is importable from `validation.targets`.

Cleanup: every started target registers itself; `cleanup_all()` (called at session end, atexit
and on SIGTERM/SIGINT by the plugin) removes containers and kills process groups, so Ryuk is not
needed (TESTCONTAINERS_RYUK_DISABLED=true works; with Ryuk on it is a second safety net).
Leftovers of a crashed earlier run are found by label and removed by `sweep_stale_containers()`.
"""

from pathlib import Path

from validation.targets.base import (
    APP_PORT,
    CONTAINER_CHECKPOINTS,
    CONTAINER_LOGS,
    LABEL,
    LOCAL_BASE_IMAGE,
    REPO,
    BuildFailed,
    Say,
    Target,
    TargetError,
    _noop,
    cleanup_all,
    free_port,
    wait_http,
)
from validation.targets.container import ContainerTarget
from validation.targets.engine import (
    docker_answers,
    docker_client,
    ensure_engine,
    run_in_image,
    run_script,
    running_image,
    ryuk_setting,
    sweep_stale_containers,
)
from validation.targets.image import (
    REVISION_LABEL,
    build_image,
    default_build_args,
    git_build_id,
    image_present,
    image_revision,
    image_size_bytes,
)
from validation.targets.process import ProcessTarget
from validation.targets.url import UrlTarget


def start_target(
    kind: str,
    *,
    base_url: str | None = None,
    auth: tuple[str, str] | None = None,
    image: str | None = None,
    env: dict[str, str] | None = None,
    health_timeout: float,
    mem_limit: str,
    log_path: Path | None = None,
    say: Say = _noop,
) -> Target:
    """The app under test, to start (or, for `url`, reach) with `with` or .start(), which raise
    TargetError with the app's log when it does not come up healthy. `base_url` and `auth` are for url,
    `image` and `mem_limit` for container, `log_path` for process."""
    if kind == "url":
        if not base_url:
            raise TargetError("url target needs a base URL (--base-url)")
        return UrlTarget(base_url, auth, health_timeout, say=say)
    if kind == "process":
        return ProcessTarget(env=env, health_timeout=health_timeout, log_path=log_path, say=say)
    if kind == "container":
        if not image:
            raise TargetError("container target needs an image tag")
        return ContainerTarget(image, env=env, health_timeout=health_timeout, mem_limit=mem_limit, say=say)
    raise TargetError(f"unknown target kind {kind!r} (container, process or url)")


__all__ = [
    "APP_PORT", "CONTAINER_CHECKPOINTS", "CONTAINER_LOGS", "LABEL", "LOCAL_BASE_IMAGE", "REPO", "REVISION_LABEL",
    "BuildFailed", "ContainerTarget", "ProcessTarget", "Say", "Target", "TargetError", "UrlTarget", "build_image",
    "cleanup_all", "default_build_args", "docker_answers", "docker_client", "ensure_engine", "free_port", "git_build_id",
    "image_present", "image_revision", "image_size_bytes", "run_in_image", "run_script", "running_image", "ryuk_setting",
    "start_target", "sweep_stale_containers", "wait_http",
]
