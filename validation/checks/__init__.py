"""The checks (a package: common, probes, actions, image): plain functions of (an HTTP client or inspect data, a gate).

Each one measures from outside, records through `gate.measure(...)` and fails with a message
naming the criterion and the measured value. The smoke suite calls them against the target; the
gate-sensitivity tests (tests/test_gate_*.py) call the same functions against broken stubs.
"""

from __future__ import annotations

from validation.checks.actions import (  # noqa: F401
    EFFECT_PROMPT,
    UI_VERDICT,
    checkpoint_effect,
    evaluate,
    generate,
    gradio_evaluate,
    model_load,
    runs_on_volume,
    summary_problems,
    train_cancel,
    training,
    training_summary,
    ui_verdict,
)
from validation.checks.common import (  # noqa: F401
    ELEMENTS_FILE,
    ERROR_LINE,
    ERROR_LINE_ALLOWED,
    HARMFUL_TEXT,
    HARMLESS_TEXT,
    METRIC_FAMILIES,
    REPO,
    is_error_line,
    ui_names,
)
from validation.checks.image import (  # noqa: F401
    BUILD_TOOLS_NOT_ALLOWED,
    EXCLUDED_PATHS,
    SERVER_PROBE,
    image_config,
    image_files,
    parse_server_processes,
    server_user,
)
from validation.checks.probes import (  # noqa: F401
    build,
    health,
    log_errors,
    memory,
    memory_growth,
    metrics,
    ready,
    ready_truthful,
    startup,
    ui,
)
from validation.checks.usage import Rise, journey_rises, scrape, usage_metrics  # noqa: F401
