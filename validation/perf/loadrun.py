"""Run the locustfile headless in its own process(es) and read what it measured.

    spec = LoadSpec(base_url, out_dir, budget=100, users=10)
    result = run_load(spec)                 # blocks; locust runs as a subprocess (or master + workers)
    result.endpoints["/health"].p95_s, result.total.failures, result.rps, result.cpu_seconds

Nothing here imports locust (it monkey-patches gevent on import): results come from locust's own
files, `<out>/locust.json` (per-endpoint counts, times and rates), `<out>/locust_stats_final.csv` (its
percentiles as its own CSV writer puts them, at quit: the report's agree with its HTML), `<out>/locust.html` (its report) and
the request log the locustfile writes (`<out>/requests.<pid>.jsonl`, one line per request), for what
locust cannot select: a time window, or the answers whose text belongs to their prompt.
"""

from __future__ import annotations

import csv
import json
import math
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from validation.gate import CLOCK

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
REPO = LOCUSTFILE.parents[2]


@dataclass
class LoadSpec:
    base_url: str
    out_dir: Path
    budget: int = 100
    generations: int = 0  # generations in the generators' own pool, beside the budget (0: they share it)
    users: int = 10
    spawn_rate: float = 10
    max_seconds: float = 300  # safety cap (--run-time); the budget normally ends the run first
    workers: int = 0  # 0: one local process; N: --master + N --worker processes on this machine
    train_preset: str = "smoke"
    gen_tokens: int = 64
    poll_interval: float = 2.0
    think_scale: float = 1.0
    judge_share: float = 0.25
    user_classes: list[str] = field(default_factory=list)  # empty: all
    python: str = sys.executable
    extra_args: list[str] = field(default_factory=list)

    def common_args(self) -> list[str]:
        return [
            "-f",
            str(LOCUSTFILE),
            "--request-budget",
            str(self.budget),
            "--generation-budget",
            str(self.generations),
            "--budget-workers",
            str(max(1, self.workers)),
            "--request-log",
            str(self.out_dir / "requests"),
            "--gen-tokens",
            str(self.gen_tokens),
            "--train-preset",
            self.train_preset,
            "--poll-interval",
            str(self.poll_interval),
            "--think-scale",
            str(self.think_scale),
            "--judge-share",
            str(self.judge_share),
        ]

    def commands(self) -> list[list[str]]:
        """The locust command lines: [the one process] or [master, worker, ...]."""
        locust = [self.python, "-m", "locust"]
        out = self.out_dir
        main = [
            *locust,
            *self.common_args(),
            "--headless",
            "-H",
            self.base_url,
            "-u",
            str(self.users),
            "-r",
            str(self.spawn_rate),
            "--run-time",
            f"{int(self.max_seconds)}s",
            "--stop-timeout",
            "30",
            "--json-file",
            str(out / "locust"),
            "--csv",
            str(out / "locust"),
            "--html",
            str(out / "locust.html"),
            "--only-summary",
            "--loglevel",
            "INFO",
            *self.extra_args,
            *self.user_classes,
        ]
        if not self.workers:
            return [main]
        from validation.targets import free_port

        port = free_port()
        master = [*main, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
        master += ["--expect-workers", str(self.workers), "--expect-workers-max-wait", "60"]
        worker = [*locust, *self.common_args(), "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
        worker += ["--loglevel", "INFO", *self.user_classes]
        return [master] + [list(worker) for _ in range(self.workers)]

    def command_text(self) -> str:
        return "\n".join(" ".join(c) for c in self.commands())


@dataclass
class Endpoint:
    name: str
    count: int
    failures: int
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    max_s: float | None
    mean_s: float | None
    rps: float


@dataclass
class LoadResult:
    spec: dict[str, Any]
    endpoints: dict[str, Endpoint]
    total: Endpoint
    started: float  # epoch seconds, first request
    ended: float  # epoch seconds, last request
    wall_s: float  # locust process(es) start to exit
    cpu_seconds: float  # CPU of the locust process(es), user + system
    exit_codes: list[int]
    errors: list[dict]
    files: dict[str, str]
    requests: list[dict] = field(default_factory=list)  # the request log, sorted by start time
    log_tail: str = ""

    @property
    def sent(self) -> int:
        return self.total.count

    @property
    def duration_s(self) -> float:
        return max(0.0, self.ended - self.started)

    def find(self, prefix: str) -> list[Endpoint]:
        return [e for n, e in self.endpoints.items() if n.startswith(prefix)]

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("requests")
        return d


def read_stats_csv(path: Path) -> dict[str, dict[str, float | None]]:
    """Locust's own percentiles as its CSV writer writes them (what its HTML shows too;
    `<out>/locust_stats_final.csv`, written by the locustfile at quit, after the last request): one
    row per endpoint and `Aggregated` -> {"METHOD name" or "Aggregated": {"p50_s", "p95_s", "p99_s"}};
    None where locust has none ("N/A"). Empty when the file is missing (locust did not finish)."""
    if not path.exists():
        return {}
    out = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            key = row["Name"] if row["Name"] == "Aggregated" else f"{row['Type']} {row['Name']}"
            out[key] = {f"p{q}_s": _seconds(row.get(f"{q}%")) for q in (50, 95, 99)}
    return out


def _seconds(ms: str | None) -> float | None:
    try:
        return round(float(ms) / 1000, 4)
    except (TypeError, ValueError):  # "N/A": no requests
        return None


def exact_percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of raw values (the request log)."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-q * len(v) // 1)) - 1))
    return v[k]


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def quantile_bounds(values: list[float], q: float, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Distribution-free one-sided `confidence` bounds (lower, upper) on the q-quantile of what `values`
    sample, from order statistics: the upper bound is the smallest x_(k) with P(Binomial(n, q) < k) >=
    confidence. None where n is too small (a p95's 95 % upper bound needs n >= 59: then it is the max)."""
    v, n = sorted(values), len(values)
    upper = next((v[k - 1] for k in range(1, n + 1) if _binomial_cdf(k - 1, n, q) >= confidence), None)
    lower = next((v[j - 1] for j in range(n, 0, -1) if _binomial_cdf(j - 1, n, q) <= 1 - confidence), None)
    return lower, upper


def _entry_to_endpoint(e: dict, name: str, percentiles: dict[str, float | None]) -> Endpoint:
    n = int(e.get("num_requests", 0))
    start, last = e.get("start_time") or 0, e.get("last_request_timestamp") or 0
    span = max(last - start, 1e-9)

    def s(ms):
        return None if ms is None else round(ms / 1000, 4)

    return Endpoint(
        name=name,
        count=n,
        failures=int(e.get("num_failures", 0)),
        p50_s=percentiles.get("p50_s"),
        p95_s=percentiles.get("p95_s"),
        p99_s=percentiles.get("p99_s"),
        max_s=s(e.get("max_response_time")) if n else None,
        mean_s=s(e["total_response_time"] / n) if n else None,
        rps=round(n / span, 3) if n > 1 else float(n),
    )


def parse_stats(entries: list[dict], percentiles: dict[str, dict[str, float | None]] | None = None
                ) -> tuple[dict[str, Endpoint], Endpoint, float, float]:
    """Per-endpoint results and the aggregate: counts, times and rates from locust's JSON (a list of
    StatsEntry dicts), percentiles from its CSV (read_stats_csv)."""
    percentiles = percentiles or {}
    endpoints: dict[str, Endpoint] = {}
    agg: dict[str, Any] = {
        "num_requests": 0,
        "num_failures": 0,
        "total_response_time": 0,
        "max_response_time": 0,
        "start_time": None,
        "last_request_timestamp": None,
    }
    for e in entries:
        name = f"{e['method']} {e['name']}"
        endpoints[name] = _entry_to_endpoint(e, name, percentiles.get(name, {}))
        agg["num_requests"] += e.get("num_requests", 0)
        agg["num_failures"] += e.get("num_failures", 0)
        agg["total_response_time"] += e.get("total_response_time", 0)
        agg["max_response_time"] = max(agg["max_response_time"], e.get("max_response_time") or 0)
        st, lt = e.get("start_time"), e.get("last_request_timestamp")
        if st:
            agg["start_time"] = min(agg["start_time"] or st, st)
        if lt:
            agg["last_request_timestamp"] = max(agg["last_request_timestamp"] or lt, lt)
    total = _entry_to_endpoint(agg, "Aggregated", percentiles.get("Aggregated", {}))
    return endpoints, total, agg["start_time"] or 0.0, agg["last_request_timestamp"] or 0.0


def read_request_log(out_dir: Path) -> list[dict]:
    rows = []
    for p in sorted(out_dir.glob("requests.*.jsonl")):
        for line in p.read_text().splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    rows.sort(key=lambda r: r.get("t", 0))
    return rows


def run_load(spec: LoadSpec, say=lambda _m: None, timeout_slack: float = 90) -> LoadResult:
    """Run locust (blocking) and return its results. The CPU of the locust processes is taken from
    their rusage (RUSAGE_CHILDREN delta: the only children waited for meanwhile are these)."""
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    for old in spec.out_dir.glob("requests.*.jsonl"):
        old.unlink()
    cmds = spec.commands()
    (spec.out_dir / "command.txt").write_text(spec.command_text() + "\n")
    say(
        f"locust: {spec.budget} requests, {spec.users} users"
        + (f", master + {spec.workers} workers" if spec.workers else "")
        + f" -> {spec.base_url} (out: {spec.out_dir})"
    )
    # locust loads the locustfile by path; it imports the gate's API from the repository
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    procs, logs = [], []
    for i, cmd in enumerate(cmds):
        log_path = spec.out_dir / ("locust.log" if i == 0 else f"locust-worker{i}.log")
        fh = open(log_path, "wb")  # noqa: SIM115 - closed below
        logs.append((log_path, fh))
        procs.append(
            subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        )
    deadline = t0 + spec.max_seconds + timeout_slack
    codes: list[int] = []
    try:
        with CLOCK.spent("app"):  # locust's run: waiting on the app under load, not the gate's own time
            for p in procs:
                remaining = max(1.0, deadline - time.monotonic())
                try:
                    codes.append(p.wait(remaining))
                except subprocess.TimeoutExpired:
                    _kill(p)
                    codes.append(p.wait(10))
    finally:
        for p in procs:
            if p.poll() is None:
                _kill(p)
                p.wait(10)
        for _, fh in logs:
            fh.close()
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    json_path = spec.out_dir / "locust.json"
    entries = json.loads(json_path.read_text()) if json_path.exists() else []
    endpoints, total, started, ended = parse_stats(entries, read_stats_csv(spec.out_dir / "locust_stats_final.csv"))
    errors = []
    fail_csv = spec.out_dir / "locust_failures.csv"
    if fail_csv.exists():
        with open(fail_csv, newline="") as fh:
            errors = list(csv.DictReader(fh))
    tail = "\n".join(logs[0][0].read_text(errors="replace").splitlines()[-30:])
    files = {
        "json": str(json_path),
        "csv": str(spec.out_dir / "locust_stats_final.csv"),
        "html": str(spec.out_dir / "locust.html"),
        "log": str(logs[0][0]),
        "command": str(spec.out_dir / "command.txt"),
    }
    return LoadResult(
        spec={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(spec).items()},
        endpoints=endpoints,
        total=total,
        started=started,
        ended=ended,
        wall_s=round(wall, 2),
        cpu_seconds=round(cpu, 3),
        exit_codes=codes,
        errors=errors,
        files=files,
        requests=read_request_log(spec.out_dir),
        log_tail=tail,
    )


def _kill(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
