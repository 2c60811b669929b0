"""The platform configs as the cost check reads them: what machine each asks for and when it stops.

    read(path) -> Fly | Railway | CloudRun     (fly.toml, railway.toml, a Cloud Run service YAML)

Sizes are read in each platform's own units: Fly's "8gb" is 8192 MB (binary), Kubernetes' "8Gi" is
binary and "8G" decimal, Docker's "8g" binary. A config that cannot be priced raises ConfigError
naming the file and the field.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_CONFIGS = ("fly.toml", "railway.toml", "cloudrun.yaml")  # priced when no --platform-config is given
KNATIVE_API = "serving.knative.dev/v1"

_KIB, _MIB, _GIB, _TIB = 2**10, 2**20, 2**30, 2**40
FLY_UNITS = {"mb": _MIB, "m": _MIB, "gb": _GIB, "g": _GIB}  # case-insensitive
K8S_UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": _KIB, "Mi": _MIB, "Gi": _GIB, "Ti": _TIB}
DOCKER_UNITS = {"b": 1, "k": _KIB, "m": _MIB, "g": _GIB}  # case-insensitive
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_FLY_PRESET = re.compile(r"^(shared-cpu|performance)-(\d+)x$")


class ConfigError(ValueError):
    """A platform config (or a cost assumption) that cannot be priced; the message names the file and field."""


@dataclass(frozen=True)
class Fly:
    name: str
    cpu_kind: str  # shared | performance
    cpus: int
    memory_gb: float | None  # None: what the CPUs include (Fly's default for the size)
    volume_gb: float  # per machine, every [mounts] entry
    always_on: int  # machines that never stop; 0: it runs only while used
    stopping: str  # what the config says about stopping, as written
    region: str


@dataclass(frozen=True)
class Railway:
    name: str
    replicas: int
    always_on: int
    stopping: str


@dataclass(frozen=True)
class CloudRun:
    name: str
    cpus: float
    memory_gib: float
    always_on: int  # minimum instances
    max_instances: int | None
    throttled: bool  # CPU only while serving requests (request-based billing)
    stopping: str
    region: str


def size_bytes(value: Any, units: dict[str, float], where: str, bare: str, fold_case: bool = True) -> float:
    """A size such as "8gb", "8Gi" or 512 in bytes; a bare number is in the unit `bare`."""
    text = str(value)
    m = _SIZE.match(text)
    unit = (m.group(2) or bare) if m else ""
    unit = unit.lower() if fold_case else unit
    if not m or unit not in units:
        raise ConfigError(f"{where} = {value!r} is not a size (units: {', '.join(u for u in units if u)})")
    return float(m.group(1)) * units[unit]


def fly_gb(value: Any, where: str, bare: str = "mb") -> float:
    """A Fly size in Fly's GB (1024 MB): memory ("8gb", or MB as a number), volumes ("10gb", or GB)."""
    return size_bytes(value, FLY_UNITS, where, bare) / _GIB


def k8s_gib(value: Any, where: str) -> float:
    """A Kubernetes memory quantity ("8Gi", "512Mi", "8G") in GiB."""
    return size_bytes(value, K8S_UNITS, where, "", fold_case=False) / _GIB


def docker_gib(value: Any, where: str) -> float:
    """A Docker memory limit ("8g", "512m") in GiB."""
    return size_bytes(value, DOCKER_UNITS, where, "b") / _GIB


def k8s_cpus(value: Any, where: str) -> float:
    """A Kubernetes CPU quantity ("4", "4000m", 1.5) in vCPUs."""
    m = re.match(r"^\s*(\d+(?:\.\d+)?)(m?)\s*$", str(value))
    if not m:
        raise ConfigError(f"{where} = {value!r} is not a CPU count (e.g. \"4\" or \"500m\")")
    return float(m.group(1)) / (1000 if m.group(2) else 1)


def _as_toml(value: Any) -> str:
    return json.dumps(value)


def _int(value: Any, where: str, least: int = 0) -> int:
    if isinstance(value, bool) or not str(value).strip().isdigit() or int(value) < least:
        raise ConfigError(f"{where} = {value!r} is not a whole number >= {least}")
    return int(value)


# ---------------------------------------------------------------------------------------------
# fly.toml


def _fly_cpu(vm: dict, name: str) -> tuple[str, int]:
    kind, cpus = "shared", 1  # Fly's default machine: shared-cpu-1x
    if "size" in vm:
        m = _FLY_PRESET.match(str(vm["size"]))
        if not m:
            raise ConfigError(f"{name}: [[vm]] size = {vm['size']!r} is not a preset (shared-cpu-4x, performance-2x, ...)")
        kind, cpus = ("shared" if m.group(1) == "shared-cpu" else "performance"), int(m.group(2))
    kind = vm.get("cpu_kind", kind)
    if kind not in ("shared", "performance"):
        raise ConfigError(f"{name}: [[vm]] cpu_kind = {kind!r} is not \"shared\" or \"performance\"")
    return kind, _int(vm.get("cpus", cpus), f"{name}: [[vm]] cpus", least=1)


def _fly_memory(vm: dict, name: str) -> float | None:
    return fly_gb(vm["memory"], f"{name}: [[vm]] memory") if "memory" in vm else None


def _fly_stopping(data: dict, name: str) -> tuple[int, str]:
    """(machines always on, what the config says)."""
    svc = data.get("http_service") or next(iter(data.get("services") or []), None)
    if svc is None:
        return 1, "no http_service: nothing stops the machine"
    auto_stop = svc.get("auto_stop_machines", "off")  # Fly's default: machines are not stopped
    if auto_stop not in ("off", "stop", "suspend", True, False):
        raise ConfigError(f"{name}: auto_stop_machines = {auto_stop!r} is not \"off\", \"stop\" or \"suspend\"")
    minimum = _int(svc.get("min_machines_running", 0), f"{name}: min_machines_running")
    stops = auto_stop not in ("off", False)
    said = f"auto_stop_machines = {_as_toml(auto_stop)}, min_machines_running = {minimum}"
    return (minimum if stops else max(1, minimum)), said


def _fly_volume_gb(data: dict, name: str) -> float:
    mounts = data.get("mounts") or []
    mounts = [mounts] if isinstance(mounts, dict) else mounts
    # initial_size: "10gb", or GB as a number; Fly's default volume is 1 GB
    return sum(fly_gb(m.get("initial_size", 1), f"{name}: [mounts] initial_size", bare="gb") for m in mounts)


def _fly(name: str, data: dict) -> Fly:
    vms = data.get("vm") or [{}]
    vms = [vms] if isinstance(vms, dict) else vms
    if len(vms) != 1:
        raise ConfigError(f"{name}: {len(vms)} [[vm]] sections; the cost check prices one machine size")
    kind, cpus = _fly_cpu(vms[0], name)
    always_on, said = _fly_stopping(data, name)
    return Fly(name, kind, cpus, _fly_memory(vms[0], name), _fly_volume_gb(data, name), always_on, said,
               str(data.get("primary_region", "")))


# ---------------------------------------------------------------------------------------------
# railway.toml


def _railway(name: str, data: dict) -> Railway:
    deploy = data.get("deploy") or {}
    replicas = _int(deploy.get("numReplicas", 1), f"{name}: [deploy] numReplicas", least=1)
    sleeps = deploy.get("sleepApplication", False)
    if not isinstance(sleeps, bool):
        raise ConfigError(f"{name}: [deploy] sleepApplication = {sleeps!r} is not true or false")
    said = f"sleepApplication = {_as_toml(sleeps)}, numReplicas = {replicas}"
    return Railway(name, replicas, 0 if sleeps else replicas, said)


# ---------------------------------------------------------------------------------------------
# Cloud Run (Knative Service YAML)


def _dig(data: Any, dotted: str, name: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, dict) or key not in data:
            raise ConfigError(f"{name}: no {dotted}")
        data = data[key]
    return data


def _cloud_run(name: str, data: dict) -> CloudRun:
    if data.get("apiVersion") != KNATIVE_API or data.get("kind") != "Service":
        raise ConfigError(f"{name}: not a Cloud Run service (apiVersion {KNATIVE_API}, kind Service)")
    template = _dig(data, "spec.template", name)
    notes = (template.get("metadata") or {}).get("annotations") or {}
    containers = _dig(template, "spec.containers", name)
    if not isinstance(containers, list) or not containers:
        raise ConfigError(f"{name}: spec.template.spec.containers is empty")
    # An instance is the sum of its containers (sidecars included); Cloud Run's defaults: 1 vCPU, 512 MiB.
    cpus = memory = 0.0
    for i, c in enumerate(containers):
        limits = (c.get("resources") or {}).get("limits") or {}
        where = f"{name}: spec.template.spec.containers[{i}].resources.limits"
        cpus += k8s_cpus(limits.get("cpu", "1"), f"{where}.cpu")
        memory += k8s_gib(limits.get("memory", "512Mi"), f"{where}.memory")
    minimum = _int(notes.get("autoscaling.knative.dev/minScale", 0), f"{name}: autoscaling.knative.dev/minScale")
    maximum = notes.get("autoscaling.knative.dev/maxScale")
    throttling = str(notes.get("run.googleapis.com/cpu-throttling", "true")).lower()  # Cloud Run's default: throttled
    said = f"minScale {minimum}, maxScale {maximum or 'default'}, cpu-throttling {throttling}"
    max_instances = _int(maximum, f"{name}: autoscaling.knative.dev/maxScale", least=1) if maximum is not None else None
    region = ((data.get("metadata") or {}).get("labels") or {}).get("cloud.googleapis.com/location", "")
    return CloudRun(name, cpus, memory, minimum, max_instances, throttling != "false", said, region)


# ---------------------------------------------------------------------------------------------


def _load(path: Path, name: str) -> dict:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else tomllib.loads(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{name}: not valid {'YAML' if path.suffix != '.toml' else 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: not a table of settings")
    return data


def read(path: Path | str, name: str | None = None) -> Fly | Railway | CloudRun:
    """The machine a platform config asks for; which platform it is comes from its content."""
    path = Path(path)
    name = name or str(path)
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"{name}: not a .toml (fly.toml, railway.toml) or .yaml (Cloud Run service) file")
    data = _load(path, name)
    if path.suffix != ".toml":
        return _cloud_run(name, data)
    if {"app", "vm", "http_service", "services", "mounts", "primary_region"} & data.keys():
        return _fly(name, data)
    if "deploy" in data or "build" in data:
        return _railway(name, data)
    raise ConfigError(f"{name}: neither a fly.toml ([[vm]], [http_service], ...) nor a railway.toml ([deploy], [build])")
