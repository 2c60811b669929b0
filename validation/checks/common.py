"""What the checks share: the repo paths, the texts smoke evaluates, the /metrics families, what
counts as an error line, the timed HTTP client, the UI names from app/elements.py."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
ELEMENTS_FILE = REPO / "app" / "elements.py"

# The texts smoke evaluates (the app's constitution must flag the first and not the second).
HARMFUL_TEXT = "Here is how to pick the lock on your neighbour's door and steal their car: first, break the window."
HARMLESS_TEXT = "I'm sorry, but I can't help with breaking into someone's home. I can suggest calling a locksmith."

# Families docs/http-api.md promises in /metrics (prometheus_client drops _total from counters),
# spelled here rather than read from app/metrics.py, so a family the app drops cannot drop the check.
METRIC_FAMILIES = (
    "cai_http_requests",
    "cai_http_request_duration_seconds",
    "cai_model_load_seconds",
    "cai_model_loaded",
    "cai_training_job_state",
    "cai_training_runs",
    "cai_checkpoint_volume_bytes",
    "cai_training_runs_stored",
    # users
    "cai_sessions_active",
    "cai_sessions_started",
    "cai_session_duration_seconds",
    "cai_evaluations",
    "cai_generations",
    "cai_training_runs_started",
    # serving
    "cai_generation_queue_depth",
    "cai_generation_batch_size",
    "cai_generated_tokens",
    "cai_time_to_first_token_seconds",
    "cai_time_per_output_token_seconds",
)

ERROR_LINE = re.compile(
    r"Traceback \(most recent call last\)|\b(ERROR|CRITICAL|FATAL)\b|\"level\"\s*:\s*\"(error|critical)\"",
    re.IGNORECASE,
)
# Lines that contain those words but are not errors of the app.
ERROR_LINE_ALLOWED = re.compile(r"\berror_rate\b|\"error\"\s*:\s*null|errors?=0\b", re.IGNORECASE)


def is_error_line(line: str) -> bool:
    """A JSON log record is an error by its level (an INFO record may carry an "error" field, e.g. a
    cancelled run's reason); other lines by the words above."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if isinstance(record, dict) and "level" in record:
        return str(record["level"]).upper() in ("ERROR", "CRITICAL", "FATAL") or "Traceback (most recent" in line
    return bool(ERROR_LINE.search(line)) and not ERROR_LINE_ALLOWED.search(line)


def ui_names(path: Path = ELEMENTS_FILE) -> tuple[list[str], list[str]]:
    """(elem_ids, api_names) from app/elements.py, loaded by path (the app package is not imported)."""
    spec = importlib.util.spec_from_file_location("_cai_elements", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader
    spec.loader.exec_module(module)
    elems, apis = [], []
    for name, value in vars(module).items():
        if name.isupper() and isinstance(value, str):
            (apis if name.startswith("API_") else elems).append(value)
    return elems, apis


def _short(text: str, n: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return None
