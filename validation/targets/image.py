"""Building the image: testcontainers' DockerImage with a streamed build log, the default build
args (offline wheelhouse, local base image), and the image's size."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

from validation.gate import CLOCK
from validation.targets.base import LOCAL_BASE_IMAGE, REPO, BuildFailed, Say, _noop
from validation.targets.engine import docker_client, run_script


def _image_class():
    from testcontainers.core.image import DockerImage

    class StreamingDockerImage(DockerImage):
        """testcontainers' DockerImage, building through the low-level API so the log streams
        (progress lines to `say`, everything to a file) and a failure carries the whole log."""

        def __init__(self, *args: Any, say: Say = _noop, log_path: Path | None = None, **kw: Any):
            super().__init__(*args, **kw)
            self._say = say
            self._log_path = log_path
            self.log_lines: list[str] = []

        def build(self):
            api = self.get_docker_client().client.api
            stream = api.build(
                path=str(self.path),
                tag=self.tag,
                dockerfile=self._dockerfile_path,
                nocache=self._no_cache,
                rm=True,
                forcerm=True,  # also remove the container of a failed step
                decode=True,
                **self._kwargs,
            )
            fh = open(self._log_path, "w") if self._log_path else None  # noqa: SIM115
            image_id, error = None, None
            try:
                for chunk in stream:
                    text = chunk.get("stream") or chunk.get("status") or ""
                    if "error" in chunk:
                        error = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                        text = f"ERROR: {error}\n"
                    if "aux" in chunk and "ID" in chunk["aux"]:
                        image_id = chunk["aux"]["ID"]
                    if not text:
                        continue
                    self.log_lines.append(text.rstrip("\n"))
                    if fh:
                        fh.write(text if text.endswith("\n") else text + "\n")
                        fh.flush()
                    if text.startswith("Step ") or text.startswith("ERROR"):
                        self._say("  " + text.strip()[:160])
                    m = re.match(r"Successfully built ([0-9a-f]+)", text)
                    if m:
                        image_id = m.group(1)
            finally:
                if fh:
                    fh.close()
            if error or not image_id:
                raise BuildFailed(
                    f"docker build failed: {error or 'no image id in the build output'}",
                    "\n".join(self.log_lines[-60:]),
                )
            self._image = self.get_docker_client().client.images.get(image_id)
            return self

    return StreamingDockerImage


# The OCI label that carries the build id (the Dockerfile sets it from its BUILD_ID build arg).
REVISION_LABEL = "org.opencontainers.image.revision"
UNKNOWN_BUILD = "dev"  # outside a git checkout (the Dockerfile's default too)


def git_build_id(repo: Path = REPO) -> str:
    """The commit the image is built from: `git rev-parse HEAD`, or "dev" outside git."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN_BUILD
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", sha) else UNKNOWN_BUILD


def image_revision(attrs: dict[str, Any]) -> str | None:
    """The build id an image carries (its REVISION_LABEL), or None."""
    return ((attrs.get("Config") or {}).get("Labels") or {}).get(REVISION_LABEL) or None


def default_build_args(repo: Path = REPO) -> dict[str, str]:
    """Build args from the Dockerfile's documented ARGs: the offline wheelhouse when it has wheels, the
    locally made base image (scripts/make-base-image.sh) when it is there, the git sha as BUILD_ID."""
    args: dict[str, str] = {}
    dockerfile = (repo / "Dockerfile").read_text() if (repo / "Dockerfile").exists() else ""
    if re.search(r"^ARG BUILD_ID\b", dockerfile, re.M):
        args["BUILD_ID"] = git_build_id(repo)
    if re.search(r"^ARG DEPS_SOURCE\b", dockerfile, re.M) and any((repo / "wheelhouse").glob("*.whl")):
        args["DEPS_SOURCE"] = "wheelhouse"
    if re.search(r"^ARG BASE_IMAGE\b", dockerfile, re.M) and image_present(LOCAL_BASE_IMAGE):
        args["BASE_IMAGE"] = LOCAL_BASE_IMAGE
    return args


def image_present(tag: str) -> bool:
    try:
        docker_client(30).images.get(tag)
        return True
    except Exception:  # noqa: BLE001 (no engine, or no such image)
        return False


def build_image(
    tag: str,
    *,
    repo: Path = REPO,
    build_args: dict[str, str] | None = None,
    log_path: Path | None = None,
    say: Say = _noop,
    no_cache: bool = False,
) -> float:
    """Build `tag` from the repo's Dockerfile with testcontainers' DockerImage; return seconds. For this
    repo's image, its prerequisites first: the local base image and the offline wheelhouse (their
    scripts are no-ops once done; when one fails, the build uses the Dockerfile's defaults)."""
    with CLOCK.spent("build"):
        if repo == REPO:
            for script in ("make-base-image.sh", "fill-wheelhouse.sh"):
                run_script(script, say)
        args = {**default_build_args(repo), **(build_args or {})}
        say(
            f"building image {tag} from {repo / 'Dockerfile'}"
            + (f" ({', '.join(f'{k}={v}' for k, v in args.items())})" if args else "")
            + (f"; log: {log_path}" if log_path else "")
        )
        image = _image_class()(path=str(repo), tag=tag, clean_up=False, no_cache=no_cache, buildargs=args, say=say,
                               log_path=log_path)
        t0 = time.perf_counter()  # the build itself: its prerequisites' scripts are not build time
        image.build()
    seconds = time.perf_counter() - t0
    say(f"image {tag} built in {seconds:.1f} s ({image.short_id})")
    return seconds


def image_size_bytes(attrs: dict[str, Any]) -> int:
    return int(attrs.get("Size") or attrs.get("VirtualSize") or 0)
