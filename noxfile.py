"""Sessions of the validation gate. `nox -l` lists them; `nox -s smoke -- --target process` passes
pytest options after `--`.

One shared virtualenv (.nox/harness) serves every session: the app's dependencies include torch
(~750 MB installed), so one venv per session would install it eight times. It is made once from
requirements/{app,dev,models}.lock (every package pinned and hashed, installed with --no-deps) and
re-installed only when a lock file changes (a stamp holds their hash). The sessions themselves are
`python=False` and run that venv's interpreter. NOX_HARNESS_VENV moves it; `nox -s venv` rebuilds it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
LOCKS = [ROOT / "requirements" / "app.lock", ROOT / "requirements" / "dev.lock", ROOT / "requirements" / "models.lock"]
VENV = Path(os.environ.get("NOX_HARNESS_VENV", ROOT / ".nox" / "harness"))
PY = VENV / "bin" / "python"
QUIET = ["-p", "no:playwright", "-p", "no:locust"]  # plugins a session without browser or load need not load

nox.options.default_venv_backend = "none"
nox.options.sessions = ["tests", "smoke"]  # plain `nox`: the unit tests and the smoke gate
nox.options.error_on_missing_interpreters = False


# ---------------------------------------------------------------------------------------------
# helpers


def _venv(session: nox.Session, venv: Path, locks: list[Path], force: bool = False) -> Path:
    """`venv`'s python; the venv made and installed from `locks` (pinned and hashed, --no-deps) when
    missing or stale: a stamp holds the locks' hash."""
    py, stamp_file = venv / "bin" / "python", venv / ".locks.sha256"
    h = hashlib.sha256(sys.version.encode())
    for lock in locks:
        h.update(lock.read_bytes())
    stamp = h.hexdigest()
    if not force and py.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return py
    if force and venv.exists():
        shutil.rmtree(venv)
    if not py.exists():
        session.log(f"creating the venv {venv} ({sys.executable})")
        session.run(sys.executable, "-m", "venv", str(venv), external=True)
    session.log(f"installing {', '.join(lock.name for lock in locks)} into {venv} (--no-deps, hashes checked)")
    session.run(str(py), "-m", "pip", "install", "--disable-pip-version-check", "--no-deps", "-q", "--require-hashes",
                *[arg for lock in locks for arg in ("-r", str(lock))], external=True)
    stamp_file.write_text(stamp)
    return py


def harness(session: nox.Session, force: bool = False) -> Path:
    """The shared venv (torch from the pip config), created and installed from the locks when missing or stale."""
    return _venv(session, VENV, LOCKS, force)


EXPORT_LOCK = ROOT / "requirements" / "export.lock"
EXPORT_VENV = VENV.parent / "export"


def exporter(session: nox.Session) -> Path:
    """The OpenVINO exporter's own venv (optimum-intel from export.lock; app/engine.py), made when
    missing or stale: its python, for OPENVINO_EXPORTER (the app run on this host exports with it)."""
    return _venv(session, EXPORT_VENV, [EXPORT_LOCK])


def _env(session_name: str, session: nox.Session | None = None) -> dict[str, str]:
    return {
        **({"OPENVINO_EXPORTER": str(exporter(session))} if session else {}),
        "GATE_SESSION": session_name,
        "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(VENV),
    }


def _gate(session: nox.Session, name: str, path: str, default_args: list[str] | None = None,
          env: dict[str, str] | None = None, posargs: list[str] | None = None) -> None:
    py = harness(session)
    posargs = list(session.posargs if posargs is None else posargs)
    if not (ROOT / path).exists():
        session.skip(f"{path} does not exist yet (its engineer adds it): nothing to run")
    session.run(
        str(py), "-m", "pytest", path, "-p", "no:cacheprovider", *(default_args or []), *posargs, external=True,
        env={**_env(name, session), **(env or {})}
    )


# ---------------------------------------------------------------------------------------------
# sessions


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Unit tests of the app and of the gate's own logic, incl. gate-sensitivity tests (tests/), one
    worker a core, a test file to a worker (its module fixtures, a Postgres cluster say, made once)."""
    py = harness(session)
    session.run(str(py), "-m", "pytest", "tests", "-p", "no:cacheprovider", "-n", "auto", "--dist", "loadfile",
                *session.posargs, external=True, env=_env("tests", session))


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff (Python), hadolint (Dockerfiles), check-jsonschema (compose file, GitHub workflows)."""
    py = harness(session)
    bin_ = VENV / "bin"
    session.run(str(bin_ / "ruff"), "check", ".", external=True)
    dockerfiles = [str(p.relative_to(ROOT)) for p in [ROOT / "Dockerfile", *sorted(ROOT.glob("compose/*/Dockerfile"))]
                   if p.exists()]
    if dockerfiles:
        session.run(str(bin_ / "hadolint"), *dockerfiles, external=True)
    compose = [p for p in ("docker-compose.yml", "compose.yml", "compose.yaml") if (ROOT / p).exists()]
    if compose:
        session.run(str(bin_ / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", *compose, external=True)
    workflows = sorted(str(p.relative_to(ROOT)) for p in (ROOT / ".github" / "workflows").glob("*.y*ml"))
    if workflows:
        session.run(str(bin_ / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *workflows, external=True)
    session.run(str(py), "-c", "import tomllib; tomllib.load(open('validation/criteria.toml','rb'))", external=True)


@nox.session(python=False)
def image(session: nox.Session) -> None:
    """Build cai-demo:latest and check it (reports/image). The gate itself starts a Docker engine when none
    answers and makes the build's prerequisites (local base image, offline wheelhouse): scripts/."""
    py = harness(session)
    # The smoke suite's image tests only (-m image): build time and log, size, user, port, entrypoint,
    # healthcheck, no compilers, no excluded paths. No app container is started.
    session.run(
        str(py),
        "-m",
        "pytest",
        "validation/smoke",
        "-m",
        "image",
        "--target",
        "container",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:playwright",
        "-p",
        "no:locust",
        *session.posargs,
        external=True,
        env=_env("image"),
    )


@nox.session(python=False)
def smoke(session: nox.Session) -> None:
    """Smoke gate: build + run the image (or --target process/url), probes, actions, report."""
    # The browser and load-test plugins are not needed here: not loading them saves a second.
    _gate(session, "smoke", "validation/smoke", QUIET)


@nox.session(python=False)
def e2e(session: nox.Session) -> None:
    """Browser gate: Playwright through load -> evaluate -> train -> generate (validation/e2e)."""
    _gate(session, "e2e", "validation/e2e")


@nox.session(python=False)
def perf(session: nox.Session) -> None:
    """Performance gate: locust load, p95, errors, memory/CPU, training time (validation/perf)."""
    _gate(session, "perf", "validation/perf")


def _without_target(args: list[str], options: tuple[str, ...] = ("--target", "--base-url")) -> list[str]:
    """pytest options without `options` (both forms: `--target X`, `--target=X`)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in options:
            skip = True
        elif not a.startswith(tuple(f"{o}=" for o in options)):
            out.append(a)
    return out


@nox.session(python=False)
def targets(session: nox.Session) -> None:
    """The process target the README promises: smoke, and perf without its `quick` run. The url
    target runs in `replicas`, through the balancer. The session's own --target and --base-url are replaced."""
    args = _without_target(session.posargs)
    out = "reports/targets"
    # a deployment on a host builds and exports the default model first, as the image's build does
    session.run(str(harness(session)), "-m", "app", "build-models", "smollm2", external=True,
                env=_env("targets", session))
    _gate(session, "smoke", "validation/smoke", [*QUIET, "--target", "process", "--report-dir", f"{out}/smoke-process"],
          posargs=args)
    if os.environ.get("GATE_PROCESS_PERF", "on").lower() in ("0", "off", "false", "no"):
        session.log("perf on the process target not run: GATE_PROCESS_PERF=off (perf on the container measures "
                    "the same criteria)")
        return
    # `quick` and the behaviour it shows are measured over HTTP, the same on every target: the
    # container's perf run has them
    _gate(session, "perf", "validation/perf", ["--target", "process", "-k", "not quick", "--report-dir",
                                               f"{out}/perf-process"], posargs=args)


@nox.session(python=False)
def replicas(session: nox.Session) -> None:
    """Two replicas sharing one Postgres behind HAProxy (validation/targets/replicas.py): the smoke gate
    on the url target through the balancer (TLS, HSTS, http redirected, the build), as the deploy
    workflow reaches a platform; then the fleet's own criteria (validation/replicas), on the compose
    `scale` profile's containers with --target container, else on process replicas. The smoke's
    --target and --base-url are replaced."""
    args = _without_target(session.posargs)
    out = "reports/replicas"
    py = str(harness(session))
    session.run(py, "-m", "app", "build-models", "smollm2", external=True, env=_env("replicas", session))
    session.run(py, "-m", "validation.targets.replicas", "--", py, "-m", "pytest", "validation/smoke", "-p",
                "no:cacheprovider", *QUIET, "--target", "url", "--base-url", "{url}", "--http-url", "{http_url}",
                "--expect-build", "{build}", "--report-dir", f"{out}/smoke", *args, external=True, env=_env("smoke"))
    _gate(session, "replicas", "validation/replicas", [*QUIET, "--report-dir", f"{out}/fleet"],
          posargs=_without_target(session.posargs, ("--base-url",)))


@nox.session(python=False)
def resilience(session: nox.Session) -> None:
    """Resilience gate: kills, restarts, full disk, bad input, auth (validation/resilience)."""
    _gate(session, "resilience", "validation/resilience")


@nox.session(python=False)
def faults(session: nox.Session) -> None:
    """Fault catalogue: each fault injected into the real app (process target, tiny), the gate must catch it."""
    _gate(session, "faults", "validation/faults", QUIET)


@nox.session(python=False)
def watch(session: nox.Session) -> None:
    """Uptime watch: /health, /ready and one evaluation every --interval s for --minutes (validation/watch)."""
    _gate(session, "watch", "validation/watch", QUIET)


@nox.session(python=False)
def cost(session: nox.Session) -> None:
    """Monthly cost of fly.toml, railway.toml and cloudrun.yaml at the profile's duty cycle (validation/cost); no app."""
    _gate(session, "cost", "validation/cost", QUIET)


MUTANTS_LOCK = ROOT / "requirements" / "mutants.lock"
MUTANTS_VENV = VENV.parent / "mutants"


def mutation_tool(session: nox.Session) -> Path:
    """The mutation tool's own venv (cosmic-ray from mutants.lock), made when missing or stale: its bin folder."""
    return _venv(session, MUTANTS_VENV, [MUTANTS_LOCK]).parent


@nox.session(python=False)
def mutants(session: nox.Session) -> None:
    """Mutation testing (cosmic-ray) of the modules that decide what a user sees; survivors report (validation/mutants)."""
    tool = mutation_tool(session)
    _gate(session, "mutants", "validation/mutants", QUIET,
          env={"GATE_MUTATION_TOOL": str(tool)})


@nox.session(python=False)
def demo(session: nox.Session) -> None:
    """Browser demo: the e2e journey at a watchable pace, recorded to reports/demo (validation/e2e)."""
    _gate(session, "demo", "validation/e2e", ["-m", "demo"])


@nox.session(python=False)
def venv(session: nox.Session) -> None:
    """(Re)create the shared harness venv .nox/harness from the lock files (LOCKS)."""
    harness(session, force=True)
