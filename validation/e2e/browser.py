"""How the gate launches Chromium: Debian's /usr/bin/chromium where Playwright's own browsers
cannot be installed (no download of Playwright's browsers here), with the flags a closed network needs.

Used by validation/e2e/conftest.py (pytest-playwright's `browser_type_launch_args`) and by the
gate-sensitivity tests (tests/test_gate_e2e.py), which launch without pytest-playwright.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Without the background-networking flags Chromium floods the closed network with connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DEBIAN_CHROMIUM = "/usr/bin/chromium"


def chromium_executable() -> str | None:
    """The Chromium binary to launch: $GATE_CHROMIUM, else Debian's, else None (Playwright's own)."""
    explicit = os.environ.get("GATE_CHROMIUM")
    if explicit:
        return explicit
    if Path(DEBIAN_CHROMIUM).exists():
        return DEBIAN_CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch_options(headless: bool = True, slow_mo: float = 0, **extra) -> dict:
    """Keyword arguments for `playwright.chromium.launch(...)`."""
    opts: dict = {"headless": headless, "args": list(CHROMIUM_ARGS)}
    exe = chromium_executable()
    if exe:
        opts["executable_path"] = exe
    if slow_mo:
        opts["slow_mo"] = slow_mo
    opts.update(extra)
    return opts


def why_no_browser() -> str | None:
    """A reason to skip browser tests, or None when a Chromium is there to launch."""
    if chromium_executable():
        return None
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            if Path(p.chromium.executable_path).exists():
                return None
    except Exception as exc:  # noqa: BLE001
        return f"no Chromium: {exc}"
    return f"no Chromium: install Debian's (apt-get install -y chromium) or set GATE_CHROMIUM (looked at {DEBIAN_CHROMIUM})"


def _playwright_ffmpeg_path() -> Path | None:
    """Where Playwright looks for its ffmpeg (video recording): <browsers path>/ffmpeg-<rev>/ffmpeg-linux."""
    try:
        import json

        import playwright

        meta = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
        rev = next(b["revision"] for b in json.loads(meta.read_text())["browsers"] if b["name"] == "ffmpeg")
    except Exception:  # noqa: BLE001
        return None
    root = os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or str(Path.home() / ".cache" / "ms-playwright")
    return Path(root) / f"ffmpeg-{rev}" / "ffmpeg-linux"


def ensure_ffmpeg() -> tuple[bool, str]:
    """(video possible, how). Playwright records video with its own ffmpeg build, which
    `playwright install ffmpeg` downloads (it cannot here); Debian's ffmpeg (apt-get install -y
    ffmpeg) does the same job, so link it where Playwright looks."""
    target = _playwright_ffmpeg_path()
    if target is None:
        return False, "cannot tell where Playwright looks for ffmpeg"
    if target.exists():
        return True, f"ffmpeg at {target}"
    system = shutil.which("ffmpeg")
    if not system:
        return False, f"no ffmpeg: Playwright's ({target}) is absent and none on PATH (apt-get install -y ffmpeg)"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(system)
    except OSError as exc:
        return False, f"could not link {system} to {target}: {exc}"
    return True, f"linked Debian's {system} to {target}"
