"""The HTTP contract: the OpenAPI document, docs/http-api.md and the request models agree."""

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import ValidationError

from app import schemas
from app.config import Settings
from app.server import create_app

SETTINGS = Settings()
DOC = (Path(__file__).resolve().parents[1] / "docs" / "http-api.md").read_text(encoding="utf-8")


@pytest.fixture
def openapi(settings):
    return create_app(settings, with_ui=False).openapi()


def operations(openapi) -> dict[str, dict]:
    return {f"{method.upper()} {path}": op for path, ops in openapi["paths"].items() for method, op in ops.items()}


def documented_routes() -> dict[str, str]:
    """`METHOD /path` of each row of the docs' route tables -> the row's body cell (or "")."""
    rows = {}
    for line in DOC.splitlines():
        m = re.match(r"^\| `((?:GET|POST) [^`]+)` \|(.*)$", line)
        if m:
            cells = m.group(2).split(" | ")
            rows[m.group(1)] = cells[0] if len(cells) > 1 else ""
    return rows


def test_every_operation_is_documented_and_every_documented_route_exists(openapi):
    assert set(documented_routes()) == set(operations(openapi))


def test_documented_bodies_name_exactly_the_request_fields(openapi):
    for route, op in operations(openapi).items():
        body = op.get("requestBody")
        if body is None:
            continue
        ref = body["content"]["application/json"]["schema"]
        ref = ref.get("$ref") or next(s["$ref"] for s in ref["anyOf"] if "$ref" in s)
        fields = set(openapi["components"]["schemas"][ref.rsplit("/", 1)[-1]]["properties"])
        assert set(re.findall(r'"(\w+)":', documented_routes()[route])) == fields, route


def test_documented_error_statuses_are_the_ones_routes_declare(openapi):
    documented = {int(s) for s in re.findall(r"^\| (\d{3}) \| `", DOC, flags=re.M)}
    declared = {int(code) for op in operations(openapi).values() for code in op["responses"] if int(code) >= 400}
    # 405 answers a method a path does not declare: by definition in no operation.
    assert documented - {405} == declared


def test_every_route_documents_its_guard_and_body_errors(openapi):
    for route, op in operations(openapi).items():
        codes = {int(c) for c in op["responses"]}
        if route.split()[1].startswith("/api/"):
            assert set(schemas.GUARDED) <= codes, route
        if "requestBody" in op:
            assert set(schemas.WITH_BODY) <= codes, route
        for code in codes - {200, 202}:
            assert "application/json" in op["responses"][str(code)]["content"], (route, code)


def test_text_answers_are_documented_as_text(openapi):
    ops = operations(openapi)
    assert set(ops["GET /metrics"]["responses"]["200"]["content"]) == {"text/plain"}
    assert set(ops["GET /api/runs/{run_id}/impact.{kind}"]["responses"]["200"]["content"]) == {"application/json",
                                                                                               "text/csv"}
    assert not [path for path in openapi["paths"] if "{rest" in path]


def test_request_limits_are_the_settings(settings):
    s = settings.model_copy(update=dict(max_text_chars=50, max_new_tokens_limit=8))
    R = schemas.request_models(s)
    assert R.GenerateRequest(prompt="hi").max_new_tokens == 8  # the default never exceeds the limit
    for bad in ({"prompt": "x" * 51}, {"prompt": "hi", "max_new_tokens": 9}):
        with pytest.raises(ValidationError):
            R.GenerateRequest(**bad)


@pytest.mark.parametrize("value, ok", [(3, True), (3.0, True), (3.5, False), ("3", False), (True, False), (None, True)])
def test_integers_are_json_integers_never_coerced(settings, value, ok):
    R = schemas.request_models(settings)
    if ok:
        assert R.CritiqueRequest(prompt="hi", seed=value).seed == (None if value is None else 3)
    else:
        with pytest.raises(ValidationError):
            R.CritiqueRequest(prompt="hi", seed=value)


TEXT = st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "Z", "Cc", "Co", "Cf")) | st.sampled_from(
    " \t\n\r\x0b\x0c\x1c\x85\xa0\u2028\ue000"), max_size=12)


@hsettings(max_examples=400, deadline=None)
@given(TEXT)
def test_the_published_pattern_is_the_one_the_request_models_enforce(settings_text):
    """A client reading the OpenAPI pattern and the server (and the UI, which builds the same models)
    agree on every text."""
    R = schemas.request_models(SETTINGS)
    try:
        R.EvaluateRequest(text=settings_text)
        enforced = True
    except ValidationError:
        enforced = False
    published = re.fullmatch(schemas.TEXT_PATTERN, settings_text) is not None and len(settings_text) >= 1
    assert published == enforced, repr(settings_text)
