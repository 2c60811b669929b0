"""The price table (prices.toml) and the monthly cost of a platform config, line by line.

    prices = load_prices()                       # PricesError names the file, table and field
    est = estimate(platforms.read("fly.toml"), prices, Assumptions(duty, rootfs_gb, rootfs_why, usage))
    est.total, est.markdown(), est.text()

A machine costs its price an hour times the hours it runs: all month when the config keeps it on, else
the duty cycle (duty.py). Storage is billed all month. Pure functions: tests/test_gate_cost.py.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from validation.cost.duty import HOURS_PER_MONTH, Duty
from validation.cost.platforms import CloudRun, ConfigError, Fly, Railway

PRICES_FILE = Path(__file__).with_name("prices.toml")
MAX_AGE_DAYS = 180  # older price tables are warned about
S_PER_H = 3600


class PricesError(ValueError):
    """The price table is malformed: the message names the file, the table and the field."""


@dataclass(frozen=True)
class Prices:
    path: Path
    tables: dict[str, dict]

    def table(self, platform: str) -> dict:
        if platform not in self.tables:
            raise PricesError(f"{self.path}: no [{platform}] table")
        return self.tables[platform]

    def num(self, platform: str, dotted: str) -> float:
        value: Any = self.table(platform)
        for key in dotted.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise PricesError(f"{self.path}: [{platform}] {dotted} = {value!r} is not a price (a number >= 0)")
        return float(value)

    def stale(self, today: dt.date) -> list[str]:
        """A warning for each table read more than MAX_AGE_DAYS days before `today`."""
        out = []
        for platform, t in self.tables.items():
            age = (today - t["read"]).days
            if age > MAX_AGE_DAYS:
                out.append(f"{self.path.name}: [{platform}] prices were read {t['read']}, {age} days ago "
                           f"(> {MAX_AGE_DAYS}): read {t['source']} again, then update them and `read`")
        return out


def load_prices(path: Path | str = PRICES_FILE) -> Prices:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PricesError(f"{path}: not a readable TOML price table ({exc})") from None
    for platform, t in data.items():
        if not isinstance(t, dict) or not isinstance(t.get("source"), str) or not isinstance(t.get("read"), dt.date):
            raise PricesError(f"{path}: [{platform}] needs source = \"URL\" and read = YYYY-MM-DD (a TOML date)")
    return Prices(path, data)


@dataclass(frozen=True)
class Assumptions:
    duty: Duty
    rootfs_gb: float  # a stopped Fly machine's root file system: the image
    rootfs_why: str
    railway_usage: dict[str, float]  # memory_gb, vcpu, volume_gb: Railway bills use

    def usage(self, key: str) -> float:
        value = self.railway_usage.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"criteria.toml cost_railway_usage: {key} = {value!r} is not a number >= 0 "
                              "(it needs memory_gb, vcpu and volume_gb)")
        return float(value)


@dataclass(frozen=True)
class Line:
    item: str
    arithmetic: str
    amount: float
    unit: str  # "$/h", "h" or "$"

    @property
    def amount_text(self) -> str:
        if self.unit == "h":
            return f"{self.amount:g} h"
        return f"${self.amount:.4f}/h" if self.unit == "$/h" else f"${self.amount:,.2f}"


@dataclass
class Estimate:
    config: str
    summary: str
    lines: list[Line]
    total: float
    hours: float
    prices: dict  # the platform's table header: source, read, how, not_counted, unverified
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        p = self.prices
        rows = [f"| {ln.item} | {ln.arithmetic} | {ln.amount_text} |" for ln in self.lines]
        out = [f"**{self.config}**: {self.summary}.", "", f"Prices: {p['source']}, read {p['read']}: {p.get('how', '')}.", "",
               "| item | arithmetic | amount |", "|---|---|---|", *rows,
               f"| **total a month** | | **${self.total:,.2f}** |", ""]
        out += [f"- {n}" for n in self.notes]
        out.append(f"- not counted: {p.get('not_counted', 'nothing listed')}")
        if p.get("unverified"):
            out.append(f"- not verified on the page: {', '.join(p['unverified'])} ({p.get('unverified_why', '')})")
        return "\n".join(out) + "\n"

    def text(self) -> list[str]:
        """The arithmetic as terminal lines."""
        lines = [f"{self.config}: {self.summary}"]
        lines += [f"  {ln.item}: {ln.arithmetic} = {ln.amount_text}" for ln in self.lines]
        return [*lines, f"  total: ${self.total:,.2f} a month"]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["prices"] = {k: str(v) if isinstance(v, dt.date) else v for k, v in self.prices.items()}
        return d


def _rate(x: float) -> str:
    return "$" + f"{x:.10f}".rstrip("0").rstrip(".")


def _header(prices: Prices, platform: str) -> dict:
    return {k: v for k, v in prices.table(platform).items() if not isinstance(v, dict)}


def _per_hour(what: str, cpu: tuple[str, float], memory: tuple[str, float], note: str = "") -> list[Line]:
    """(arithmetic, $/h) of the CPU and of the memory -> their lines and the sum: what `what` costs an hour."""
    return [Line("CPU", *cpu, "$/h"), Line("memory", *memory, "$/h"),
            Line(f"{what} an hour", "CPU + memory" + note, cpu[1] + memory[1], "$/h")]


def _hours(always_on: int, duty: Duty, stopping: str, unit: str) -> Line:
    if always_on:
        return Line("hours", f"{stopping}: {always_on} {unit} always on x {HOURS_PER_MONTH:g} h",
                    always_on * HOURS_PER_MONTH, "h")
    return Line("hours", f"{stopping}: runs while used, {duty.why}", duty.hours, "h")


# ---------------------------------------------------------------------------------------------
# Fly.io: CPUs (each with some RAM included) + RAM beyond that, per second while running


def _fly_memory(m: Fly, prices: Prices) -> tuple[float, float]:
    """(memory GB, GB the CPUs include), checked against the sizes Fly accepts."""
    included = prices.num("fly", f"included_memory_gb.{m.cpu_kind}") * m.cpus
    most = prices.num("fly", f"max_memory_gb.{m.cpu_kind}") * m.cpus
    memory = included if m.memory_gb is None else m.memory_gb
    if not included <= memory <= most:
        raise ConfigError(f"{m.name}: [[vm]] memory {memory:g} GB: {m.cpus} {m.cpu_kind} vCPUs take "
                          f"{included:g} to {most:g} GB (more memory needs more CPUs: cpus = ...)")
    return memory, included


def _fly(m: Fly, prices: Prices, a: Assumptions) -> Estimate:
    cpu_s, ram_s = prices.num("fly", f"cpu_second.{m.cpu_kind}"), prices.num("fly", "memory_gb_second")
    memory, included = _fly_memory(m, prices)
    cpu_h, mem_h = m.cpus * cpu_s * S_PER_H, (memory - included) * ram_s * S_PER_H
    hours = _hours(m.always_on, a.duty, m.stopping, "machine(s)")
    machines = max(1, m.always_on)
    stopped_h = max(0.0, machines * HOURS_PER_MONTH - hours.amount)
    rootfs_p, vol_p = prices.num("fly", "stopped_rootfs_gb_month"), prices.num("fly", "volume_gb_month")
    lines = [
        *_per_hour("machine", (f"{m.cpus} {m.cpu_kind} vCPU x {_rate(cpu_s)}/s x 3600 s", cpu_h),
                   (f"({memory:g} GB - {included:g} GB included with the CPUs) x {_rate(ram_s)}/GB-s x 3600 s", mem_h)),
        hours,
        Line("machine", f"${cpu_h + mem_h:.4f}/h x {hours.amount:g} h", (cpu_h + mem_h) * hours.amount, "$"),
    ]
    if stopped_h:
        rootfs = a.rootfs_gb * rootfs_p * stopped_h / HOURS_PER_MONTH
        lines.append(Line("root file system while stopped", f"{a.rootfs_gb:g} GB ({a.rootfs_why}) x {_rate(rootfs_p)}/GB-month"
                          f" x {stopped_h:g} h stopped / {HOURS_PER_MONTH:g} h", rootfs, "$"))
    if m.volume_gb:
        lines.append(Line("volume", f"{machines} x {m.volume_gb:g} GB x {_rate(vol_p)}/GB-month, all month",
                          machines * m.volume_gb * vol_p, "$"))
    size = f"{m.cpu_kind}-cpu-{m.cpus}x" if m.cpu_kind == "shared" else f"performance-{m.cpus}x"
    est = Estimate(m.name, f"Fly.io {size}, {memory:g} GB, {m.volume_gb:g} GB volume", lines,
                   sum(ln.amount for ln in lines if ln.unit == "$"), hours.amount, _header(prices, "fly"))
    region = prices.table("fly").get("region")
    if m.region and m.region != region:
        est.notes.append(f"primary_region {m.region}: priced at {region}'s rates, the lowest; other regions cost more")
    return est


# ---------------------------------------------------------------------------------------------
# Railway: the CPU and memory the service uses, per minute; a plan whose fee counts towards usage


def _railway(m: Railway, prices: Prices, a: Assumptions) -> Estimate:
    vcpu_m, mem_m = prices.num("railway", "vcpu_minute"), prices.num("railway", "memory_gb_minute")
    vcpu, memory, volume_gb = a.usage("vcpu"), a.usage("memory_gb"), a.usage("volume_gb")
    cpu_h, mem_h = vcpu * vcpu_m * 60, memory * mem_m * 60
    hours = _hours(m.always_on, a.duty, m.stopping, "replica(s)")
    compute = (cpu_h + mem_h) * hours.amount
    volume = volume_gb * prices.num("railway", "volume_gb_month")
    usage = compute + volume
    fee, included = prices.num("railway", "subscription_month"), prices.num("railway", "included_usage_month")
    bill = fee + max(0.0, usage - included)
    plan = prices.table("railway").get("plan", "the plan")
    lines = [
        *_per_hour("service", (f"{vcpu:g} vCPU in use (cost_railway_usage, assumed) x {_rate(vcpu_m)}/vCPU-min x 60", cpu_h),
                   (f"{memory:g} GB in use (cost_railway_usage, assumed) x {_rate(mem_m)}/GB-min x 60", mem_h)),
        hours,
        Line("usage", f"${cpu_h + mem_h:.4f}/h x {hours.amount:g} h + volume {volume_gb:g} GB x "
             f"{_rate(prices.num('railway', 'volume_gb_month'))}/GB-month", usage, "$"),
        Line("bill", f"{plan}: ${fee:.2f} a month, of which ${included:.2f} pays for usage: "
             f"${fee:.2f} + max(0, ${usage:.2f} - ${included:.2f})", bill, "$"),
    ]
    return Estimate(m.name, f"Railway {plan}, billed on use, {m.replicas} replica(s)", lines, bill, hours.amount,
                    _header(prices, "railway"))


# ---------------------------------------------------------------------------------------------
# Cloud Run: vCPU-seconds and GiB-seconds beyond the monthly free tier


def _cloud_run(m: CloudRun, prices: Prices, a: Assumptions) -> Estimate:
    tier = "request_based" if m.throttled else "instance_based"
    cpu_s, mem_s = prices.num("cloud_run", f"{tier}.vcpu_second"), prices.num("cloud_run", f"{tier}.memory_gib_second")
    free_cpu, free_mem = prices.num("cloud_run", f"{tier}.free_vcpu_seconds"), prices.num("cloud_run", f"{tier}.free_gib_seconds")
    hours = _hours(m.always_on, a.duty, m.stopping, "instance(s)")
    cpu_used, mem_used = m.cpus * hours.amount * S_PER_H, m.memory_gib * hours.amount * S_PER_H
    cpu_cost, mem_cost = max(0.0, cpu_used - free_cpu) * cpu_s, max(0.0, mem_used - free_mem) * mem_s
    billing = ("request-based: billed while serving requests, so these hours are an upper bound" if m.throttled
               else "instance-based (no CPU throttling): billed for as long as an instance is up")
    cpu_h, mem_h = m.cpus * cpu_s * S_PER_H, m.memory_gib * mem_s * S_PER_H
    lines = [
        *_per_hour("instance", (f"{m.cpus:g} vCPU x {_rate(cpu_s)}/vCPU-s x 3600 s", cpu_h),
                   (f"{m.memory_gib:g} GiB x {_rate(mem_s)}/GiB-s x 3600 s", mem_h), " (before the free tier)"),
        hours,
        Line("CPU a month", f"{m.cpus:g} vCPU x {hours.amount:g} h x 3600 s = {cpu_used:,.0f} vCPU-s - {free_cpu:,.0f} free, "
             f"x {_rate(cpu_s)}", cpu_cost, "$"),
        Line("memory a month", f"{m.memory_gib:g} GiB x {hours.amount:g} h x 3600 s = {mem_used:,.0f} GiB-s - "
             f"{free_mem:,.0f} free, x {_rate(mem_s)}", mem_cost, "$"),
    ]
    est = Estimate(m.name, f"Cloud Run {m.cpus:g} vCPU, {m.memory_gib:g} GiB, {billing}", lines, cpu_cost + mem_cost,
                   hours.amount, _header(prices, "cloud_run"))
    if not m.always_on and m.max_instances != 1:
        most = m.max_instances or "100 (Cloud Run's default)"
        est.notes.append(f"one instance priced; up to {most} run under load, each billed the same way")
    return est


def estimate(machine: Fly | Railway | CloudRun, prices: Prices, a: Assumptions) -> Estimate:
    """The monthly cost of one platform config's machine, every step of the arithmetic as a line."""
    by_kind = {Fly: _fly, Railway: _railway, CloudRun: _cloud_run}
    return by_kind[type(machine)](machine, prices, a)
