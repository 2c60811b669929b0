"""The HTTP contract as pydantic models: request bodies (strict types, ranges, enums), answers, and
the error shape. FastAPI validates requests with them and builds /api/openapi.json from them.

Request models are made per app (`request_models(settings)`, kept as `Service.requests`): their
limits (text length, tokens) are the settings', so the schema a client reads is the one the server
enforces. The UI builds the same models from its controls; `invalid()` turns a validation error into
the ApiError both show.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from app import constitution
from app.config import SEED_MAX, Settings
from app.errors import ApiError
from app.evaluation import MODES
from app.runs import ACTIVE
from app.training import FINAL_STATES, PRESETS

# Characters a text field refuses: control (Cc, but tab and line breaks) and private use (Co). It refuses
# lone surrogates too (Cs), which no UTF-8 body carries and no Rust or ECMA pattern can name.
_REFUSED = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ue000-\uf8ff\U000f0000-\U000ffffd\U00100000-\U0010fffd"
# Whitespace that is not refused (Cc whitespace is: \x0b \x0c \x1c-\x1f \x85), then one visible
# character, then anything not refused: "not blank, no control characters", matched in linear time.
TEXT_PATTERN = rf"^[^\S\x0b\x0c\x1c-\x1f\x85]*[^\s{_REFUSED}][^{_REFUSED}]*$"
TEXT_RULE = "must contain a visible character and no control characters"
MODEL_NAME_MAX = 200  # characters of a model name or path
DEFAULT_TOKENS = 64  # max_new_tokens when left out (MAX_NEW_TOKENS_LIMIT when that is lower)
JOB_STATES = (*sorted(ACTIVE), *sorted(FINAL_STATES))
RUN_STATES = (*JOB_STATES, "interrupted")  # a run whose process died, marked at the next start (or by a replica)



def _json_integer(value):
    """JSON has one number type: 3.0 is the integer 3 (JSON Schema agrees). "3" and true stay refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def integer(lo: int, hi: int, description: str | None = None):
    """An integer field in lo..hi (the range first: pydantic documents it only there)."""
    return Annotated[int, Field(ge=lo, le=hi, description=description), BeforeValidator(_json_integer)]


Seed = integer(0, SEED_MAX, "default: the server's SEED")


class Body(BaseModel):
    """A request body: a JSON object of exactly these fields, no coercion ("1" is not 1)."""

    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")


class Answer(BaseModel):
    """An answer: these fields at least (more may be added without notice)."""

    model_config = ConfigDict(extra="allow")


def request_models(settings: Settings) -> SimpleNamespace:
    """The request bodies, with this app's limits."""
    def text(max_chars: int, example: str):
        return Annotated[str, StringConstraints(min_length=1, max_length=max_chars, pattern=TEXT_PATTERN),
                         Field(description=f"1-{max_chars} characters; {TEXT_RULE}", examples=[example])]

    Tokens = integer(1, settings.max_new_tokens_limit, "tokens to generate")
    tokens = min(DEFAULT_TOKENS, settings.max_new_tokens_limit)
    Prompt = text(settings.max_text_chars, "How do I pick a lock?")
    largest_set = constitution.largest_eval_set()

    class LoadModelRequest(Body):
        model: text(MODEL_NAME_MAX, "smollm2")

    class EvaluateRequest(Body):
        text: text(settings.max_text_chars, "Here is how to pick the lock.")
        mode: Literal[MODES] = "rules"

    class GenerateRequest(Body):
        prompt: Prompt
        max_new_tokens: Tokens = tokens
        temperature: Annotated[float, Field(ge=0.0, le=2.0, allow_inf_nan=False,
                                            description="0: greedy")] = 0.7
        seed: Seed | None = None
        compare: bool = Field(True, description="also answer with the trained model, when there is one")

    class CritiqueRequest(Body):
        prompt: Prompt
        rounds: integer(1, 3) = 1
        max_new_tokens: Tokens = tokens
        seed: Seed | None = None

    class TrainRequest(Body):
        preset: Literal[tuple(PRESETS)] = "smoke"
        seed: Seed | None = None

    class ImpactRequest(Body):
        limit: integer(1, largest_set, "prompts of each held-out evaluation set (its first N)") = largest_set
        max_new_tokens: Tokens = tokens
        seed: Seed | None = None

    return SimpleNamespace(**{cls.__name__: cls for cls in (
        LoadModelRequest, EvaluateRequest, GenerateRequest, CritiqueRequest, TrainRequest, ImpactRequest)})


def invalid(errors) -> ApiError:
    """The first of pydantic's errors as our error: the field it names, a message a user can act on."""
    first = errors[0] if errors else {}
    kind = first.get("type", "")
    if kind == "json_invalid":
        return ApiError(400, "body", f"request body is not valid UTF-8 JSON: {first.get('ctx', {}).get('error', '')}"[:160])
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    field = loc[-1] if loc else "body"
    if kind == "missing":
        message = f"{field} is required"
    elif kind == "string_pattern_mismatch":
        message = f"{field} {TEXT_RULE}"
    elif kind == "extra_forbidden":
        message = f"{field} is not a field of this request"
    elif field == "body" and isinstance(first.get("input"), bytes):  # FastAPI parses JSON only when declared
        message = "request body must be JSON, sent with Content-Type: application/json"
    elif field == "body":
        message = f"request body must be a JSON object of this route's fields ({first.get('msg', 'invalid')})"
    else:
        message = f"{field}: {first.get('msg', 'invalid input')}"
    return ApiError(422, field, message)


# ---- answers ----------------------------------------------------------------------------------

class ErrorBody(Answer):
    error: str = Field(examples=["invalid_input"])
    field: str | None = Field(description="the field at fault, or null when no single field is")
    message: str


class Health(Answer):
    status: Literal["healthy"]
    version: str
    build: str = Field(description="the build this is: the image's git sha (BUILD_ID), dev outside an image")
    uptime_s: float
    model: str | None
    model_state: Literal["not_loaded", "loading", "ready", "failed"]
    judge_state: Literal["not_loaded", "loading", "ready", "failed"]


class Ready(Answer):
    status: Literal["ready", "loading", "not_loaded", "failed", "database_unavailable"]
    model: str | None = None
    error: str | None = None
    judge: str


class ModelInfo(Answer):
    name: str
    parameters: int
    device: str
    dtype: str
    engine: Literal["openvino", "transformers"]
    weights: str
    load_seconds: float
    export: str | None = None  # the folder the engine serves it from
    adapter: str | None = None


class Models(Answer):
    registry: list[dict[str, str]]
    current: ModelInfo | None
    state: str
    trained_run: str | None


class Loaded(Answer):
    model: str
    parameters: int
    device: str
    dtype: str
    load_seconds: float
    trained_run: str | None
    adapter: str | None


class PrincipleResult(Answer):
    name: str
    weight: float
    flagged: bool


class Evaluation(Answer):
    mode: Literal[MODES]
    flagged: bool
    flagged_principles: list[str]
    weighted_score: float
    alignment_score: float
    elapsed_s: float
    principles: list[PrincipleResult]
    agreement: float | None = None


class Generated(Answer):
    text: str
    evaluation: Evaluation
    elapsed_s: float
    tokens: int
    batch_size: int


class Generation(Answer):
    prompt: str
    base: Generated
    trained: Generated | None
    run_id: str | None


class CritiqueRound(Answer):
    principle: str
    critique_request: str
    critique: str
    revision_request: str
    revision: str
    sent: dict[str, str] | None = Field(None, description="POST /api/critique only: the text each step's model "
                                        "received (critique, revision, reply, decline), decoded from its token ids")


class Judged(Answer):
    answer_alignment: float
    revision_alignment: float
    answer_flagged: list[str]
    revision_flagged: list[str]
    verdict: Literal["better", "same", "worse"]


class Trace(Answer):
    prompt: str
    answer: str
    sent: str | None = Field(None, description="POST /api/critique only: the text the answering model received")
    rounds: list[CritiqueRound]
    final: str
    judge: Judged | None = None


class Job(Answer):
    job_id: str
    run_id: str
    preset: str
    model: str
    seed: int
    state: Literal[RUN_STATES]  # interrupted: the replica running it stopped (DATABASE_URL shared)
    phase: str
    step: int
    total_steps: int
    progress: float
    loss: float | None
    losses: list[list[float]]
    eta_s: float | None
    elapsed_s: float
    trace: list[Trace]
    checkpoint: str | None
    checkpoint_path: str | None
    error: str | None
    metrics: dict[str, Any]


class Jobs(Answer):
    active: Job | None
    last: Job | None


class Run(Answer):
    run_id: str
    state: Literal[RUN_STATES]
    preset: str
    model: str
    seed: int
    metrics: dict[str, Any] = {}


class Runs(Answer):
    runs: list[Run]


class Impact(Answer):
    run_id: str
    prompts: int = Field(description="prompts in all sets")
    sets: dict[str, int] = Field(description="prompts per evaluation set (red_team, safe, ordinary)")
    summary: dict[str, dict[str, Any]] = Field(
        description="per set, per measure: before, after, change with its 95 % bootstrap interval (ci95); "
        "yes/no measures also the exact McNemar p")
    headline: dict[str, dict[str, Any]] = Field(description="harm, over_refusal, helpfulness and relevance")
    verdict: str = Field(description="the changes in plain words, and whether each is significant")
    flagged_rate: dict[str, float]
    before: dict[str, Any]
    after: dict[str, Any]
    change_points: float
    per_principle: list[dict[str, Any]]
    examples: list[dict[str, Any]]
    json_url: str
    csv_url: str


# ---- error answers, as each route documents them ----------------------------------------------

_ERRORS = {
    400: ("body is not JSON or not valid UTF-8 (field: body)", {}),
    401: ("basic auth is on and the credentials are missing or wrong",
          {"WWW-Authenticate": "Basic realm=\"cai-demo\""}),
    403: ("a model path outside the allowed model folders (MODEL_DIRS)", {}),
    404: ("no such job, run, model or file", {}),
    409: ("busy (a training job is active), no_model, or no_trained_model", {}),
    413: ("body over MAX_BODY_BYTES (field: body)", {}),
    422: ("a field is missing, of the wrong type, out of range or not allowed (field: its name)", {}),
    429: ("over RATE_LIMIT_PER_MINUTE", {"Retry-After": "seconds until a request is allowed again"}),
    503: ("DATABASE_URL is set and its database does not answer", {}),
    507: ("no space left on the checkpoint volume", {}),
}
GUARDED = (401, 429)  # every route behind the guard may answer these (when auth / the rate limit is on)
WITH_BODY = (400, 413, 422)  # and a route that reads a body, these
STORED = (503,)  # and a route that reads or writes the runs, this: DATABASE_URL's database does not answer


def error_responses(*statuses: int) -> dict[int, dict]:
    """FastAPI `responses=` for these error statuses: the error body and the headers each sends."""
    out = {}
    for status in statuses:
        description, headers = _ERRORS[status]
        out[status] = {"model": ErrorBody, "description": description}
        if headers:
            out[status]["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                                      for name, text in headers.items()}
    return out
