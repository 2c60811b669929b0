"""The effect inventory is complete: every request field of the OpenAPI document and every control of
the UI has a criterion that proves its effect (validation/checks/effects.py EFFECTS,
validation/checks/ui_effects.py UI_EFFECTS), and each such criterion exists and is measured under
its own name."""

import re
from pathlib import Path

from app.server import create_app
from app.service import Service
from app.ui import build_ui
from validation import criteria as gate_criteria
from validation.checks.effects import EFFECTS
from validation.checks.ui_effects import UI_EFFECTS

VALIDATION = Path(__file__).resolve().parents[1] / "validation"
CONTROLS = {"button", "checkbox", "dropdown", "number", "radio", "slider", "textbox"}  # not outputs, not tabs


def request_fields(settings) -> dict[str, set[str]]:
    """Each request body schema the routes take -> its fields."""
    doc = create_app(settings, with_ui=False).openapi()
    schemas = doc["components"]["schemas"]
    out = {}
    for ops in doc["paths"].values():
        for op in ops.values():
            body = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                ref = body.get("$ref") or next(s["$ref"] for s in body["anyOf"] if "$ref" in s)
                name = ref.rsplit("/", 1)[-1]
                out[name] = set(schemas[name]["properties"])
    return out


def test_every_request_field_has_an_effect_check(settings):
    fields = request_fields(settings)
    missing = {body: sorted(f - set(EFFECTS.get(body, {}))) for body, f in fields.items() if f - set(EFFECTS.get(body, {}))}
    stale = {body: sorted(set(checked) - fields.get(body, set())) for body, checked in EFFECTS.items()
             if set(checked) - fields.get(body, set())}
    assert not missing, f"request fields with no effect check: {missing}"
    assert not stale, f"effect checks of fields the API no longer has: {stale}"


def ui_controls(settings) -> set[str]:
    """The elem_id of every control a user can set or press on the page."""
    config = build_ui(Service(settings)).get_config_file()
    return {c["props"]["elem_id"] for c in config["components"]
            if c["type"] in CONTROLS and c.get("props", {}).get("elem_id") and c["props"].get("interactive") is not False}


def test_every_ui_control_has_an_effect_check(settings):
    controls = ui_controls(settings)
    assert len(controls) >= 20
    assert not controls - set(UI_EFFECTS), f"UI controls with no effect check: {sorted(controls - set(UI_EFFECTS))}"
    assert not set(UI_EFFECTS) - controls, f"effect checks of controls the UI no longer has: {sorted(set(UI_EFFECTS) - controls)}"


def test_every_effect_criterion_exists_and_is_measured_by_name():
    criteria = gate_criteria.load()
    source = "\n".join(p.read_text(encoding="utf-8") for p in VALIDATION.rglob("*.py"))
    for inventory in re.findall(r"^(?:UI_)?EFFECTS: .*?^}\n", source, flags=re.S | re.M):
        source = source.replace(inventory, "")  # a criterion named only in an inventory is measured nowhere
    for cid in {c for fields in EFFECTS.values() for c in fields.values()} | set(UI_EFFECTS.values()):
        assert cid in criteria, f"{cid} is not in validation/criteria.toml"
        assert f'"{cid}"' in source, f"{cid} is named in EFFECTS but never measured"
