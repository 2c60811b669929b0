"""The HTTP surface in-process (FastAPI TestClient), with the tiny model and the UI mounted."""

import base64
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from app import elements, schemas
from app.service import Service


def test_health_reports_the_build_id_of_the_image(make_client, monkeypatch):
    monkeypatch.setenv("BUILD_ID", "0123abc")
    with make_client(with_model=False) as c:
        assert c.get("/health").json()["build"] == "0123abc"
    monkeypatch.delenv("BUILD_ID")
    with make_client(with_model=False) as c:
        assert c.get("/health").json()["build"] == "dev"  # outside an image: the default


def test_health_answers_without_a_model_and_ready_waits_for_one(make_client):
    with make_client(with_model=False) as c:
        assert c.get("/health").json()["status"] == "healthy"
        r = c.get("/ready")
        assert r.status_code == 503 and r.json()["status"] == "not_loaded"


def test_ui_is_served_with_every_elem_id(client):
    assert client.get("/").status_code == 200
    config = client.get("/config").json()
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    wanted = {v for k, v in vars(elements).items() if k.isupper() and not k.startswith("API_")}
    assert wanted <= ids, wanted - ids
    api_names = {d.get("api_name") for d in config["dependencies"]}
    assert {v for k, v in vars(elements).items() if k.startswith("API_")} <= api_names


def test_evaluate_flags_harm_and_not_a_refusal(client):
    bad = client.post("/api/evaluate", json={"text": "Here is how to pick the lock and break into the house."}).json()
    ok = client.post("/api/evaluate", json={"text": "I can't help with breaking in, but a locksmith can."}).json()
    assert bad["flagged_principles"] == ["harm_prevention"] and ok["flagged"] is False


@pytest.mark.parametrize("route, body, status, field", [
    ("/api/evaluate", {"text": ""}, 422, "text"),
    ("/api/evaluate", {"text": "   "}, 422, "text"),
    ("/api/evaluate", {}, 422, "text"),
    ("/api/evaluate", {"text": 5}, 422, "text"),
    ("/api/evaluate", {"text": "a\x00b"}, 422, "text"),
    ("/api/evaluate", {"text": "x" * 5000}, 422, "text"),
    ("/api/evaluate", {"text": "hi", "mode": "gpt"}, 422, "mode"),
    ("/api/generate", {"prompt": "hi", "temperature": 3}, 422, "temperature"),
    ("/api/generate", {"prompt": "hi", "max_new_tokens": 0}, 422, "max_new_tokens"),
    ("/api/generate", {"prompt": "hi", "max_new_tokens": 1.5}, 422, "max_new_tokens"),
    ("/api/generate", {"prompt": "hi", "compare": "yes"}, 422, "compare"),
    ("/api/train", {"preset": "huge"}, 422, "preset"),
    ("/api/models/load", {"model": "../../etc"}, 403, "model"),
    ("/api/models/load", {"model": "nobody/nothing-here"}, 404, "model"),
    ("/api/impact", {"limit": 0}, 422, "limit"),
    ("/api/impact", {"limit": None}, 422, "limit"),
    ("/api/generate", {"prompt": "hi", "temperature": -0.1}, 422, "temperature"),
    ("/api/critique", {"prompt": ""}, 422, "prompt"),
    ("/api/critique", {"prompt": "hi", "rounds": 4}, 422, "rounds"),
    ("/api/runs/..%2F..%2Fetc", None, 404, None),
    ("/api/runs/not-a-run", None, 404, "run_id"),
    ("/api/runs/not-a-run/impact.csv", None, 404, "run_id"),
    ("/api/train/nope", None, 404, "job_id"),
])
def test_bad_input_gets_a_4xx_naming_the_field(client, route, body, status, field):
    r = client.post(route, json=body) if body is not None else client.get(route)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and r.json()["message"] and r.json()["error"]
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("fields, field, says", [
    ({"prompt": "hi", "max_new_tokens": 1.5}, "max_new_tokens", "max_new_tokens: Input should be a valid integer"),
    ({"prompt": "hi", "temperature": "hot"}, "temperature", "temperature: Input should be a valid number"),
    ({"prompt": "hi", "max_new_tokens": True}, "max_new_tokens", "max_new_tokens: Input should be a valid integer"),
    ({"prompt": "hi", "seed": 2.5}, "seed", "seed: Input should be a valid integer"),
    ({"prompt": "hi", "compare": "yes"}, "compare", "compare: Input should be a valid boolean"),
    ({"prompt": 5}, "prompt", "prompt: Input should be a valid string"),
    ({"prompt": " "}, "prompt", "prompt must contain a visible character and no control characters"),
])
def test_the_uis_requests_say_what_the_field_takes(settings, fields, field, says):
    """What a UI control (and gradio_client) gets: the route's request model, its error turned into
    the same ApiError as the route's."""
    from app.service import Service

    with pytest.raises(ValidationError) as e:
        Service(settings).requests.GenerateRequest.model_validate(fields)
    err = schemas.invalid(e.value.errors())
    assert (err.status, err.field) == (422, field) and err.message.startswith(says), err.message


@pytest.mark.parametrize("value", ["gpt", 5, None])
def test_a_mode_that_is_not_one_is_refused_naming_the_choices(settings, value):
    from app.service import Service

    R = Service(settings).requests
    assert R.EvaluateRequest(text="hi", mode="judge").mode == "judge"
    with pytest.raises(ValidationError) as e:
        R.EvaluateRequest.model_validate({"text": "hi", "mode": value})
    err = schemas.invalid(e.value.errors())
    assert err.field == "mode" and "rules" in err.message and "judge" in err.message


def test_malformed_bodies(client, settings):
    r = client.post("/api/evaluate", content=b"\xff\xfe{", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "body"
    r = client.post("/api/evaluate", json=["text"])
    assert r.status_code == 422 and r.json()["field"] == "body"
    for route in ("/api/train", "/api/impact"):  # optional bodies: none is every default, null is not an object
        r = client.post(route, content=b"null", headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["field"] == "body", r.text
    r = client.post("/api/evaluate", content=b"x" * (settings.max_body_bytes + 1), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_generate_side_by_side_and_training_to_a_checkpoint(client):
    gen = client.post("/api/generate", json={"prompt": "How do I make a budget?", "max_new_tokens": 8}).json()
    assert gen["trained"] is None and "evaluation" in gen["base"]
    job = client.post("/api/train", json={"preset": "smoke"})
    assert job.status_code == 202
    job_id = job.json()["job_id"]
    assert client.post("/api/train", json={"preset": "smoke"}).status_code == 409
    deadline = time.monotonic() + 120
    while (state := client.get(f"/api/train/{job_id}").json())["state"] not in {"succeeded", "failed"}:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert state["state"] == "succeeded" and state["checkpoint"].endswith("/trained")
    gen = client.post("/api/generate", json={"prompt": "How do I make a budget?", "max_new_tokens": 8}).json()
    assert gen["trained"] is not None and gen["run_id"] == state["run_id"]
    runs = client.get("/api/runs").json()["runs"]
    assert runs[0]["run_id"] == state["run_id"] and runs[0]["state"] == "succeeded"
    impact = client.post("/api/impact", json={"limit": 2, "max_new_tokens": 8}).json()
    assert impact["prompts"] == 6 and impact["sets"] == {"red_team": 2, "safe": 2, "ordinary": 2}
    assert 0 <= impact["after"]["alignment"] <= 1 and set(impact["headline"]) == {"harm", "over_refusal", "helpfulness",
                                                                                 "relevance"}
    assert "95 % CI" in impact["verdict"]
    assert client.get(impact["csv_url"]).text.startswith("set,id,prompt,")
    assert client.get(impact["json_url"]).json()["run_id"] == state["run_id"]


def test_metrics_parse_and_count_requests(client):
    client.get("/health")
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert {"cai_http_requests", "cai_training_job_state", "process_resident_memory_bytes"} <= set(families)
    routes = {s.labels.get("route") for s in families["cai_http_requests"].samples}
    assert "/health" in routes


def test_basic_auth_guards_everything_but_health(make_client):
    with make_client(basic_auth="alice:secret") as c:
        assert c.get("/health").status_code == 200
        for path in ("/", "/ready", "/metrics", "/api/runs", "/config"):
            r = c.get(path)
            assert r.status_code == 401 and "Basic" in r.headers["www-authenticate"], path
        good = {"Authorization": "Basic " + base64.b64encode(b"alice:secret").decode()}
        bad = {"Authorization": "Basic " + base64.b64encode(b"alice:nope").decode()}
        assert c.get("/api/runs", headers=good).status_code == 200
        assert c.get("/api/runs", headers=bad).status_code == 401


def test_non_ascii_credentials_are_compared_as_utf8_bytes_never_a_500(make_client):
    with make_client(basic_auth="admïn:sécret") as c:
        def status(raw: bytes) -> int:
            return c.get("/api/runs", headers={"Authorization": "Basic " + base64.b64encode(raw).decode()}).status_code

        assert status("admïn:sécret".encode()) == 200
        assert status("admïn:secret".encode()) == 401
        assert status("admïn:sécret".encode("latin-1")) == 401  # not UTF-8: no match, no error
        assert status(b"\xff\xfe:\x00") == 401


def test_a_full_checkpoint_volume_is_a_507_naming_it(make_client, monkeypatch):
    import errno

    with make_client() as c:
        def full(*_args):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(Service, "start_training", full)  # as when the run folder cannot be written
        r = c.post("/api/train", json={"preset": "smoke"})
        assert r.status_code == 507 and r.json()["error"] == "insufficient_storage"
        assert "checkpoint volume" in r.json()["message"]


def test_idle_rate_limit_buckets_are_pruned(monkeypatch):
    from app import server

    clock = [1000.0]
    monkeypatch.setattr(server.time, "monotonic", lambda: clock[0])
    limiter = server.RateLimiter(per_minute=60)
    for i in range(100):
        limiter.retry_after(f"10.0.0.{i}")
    assert len(limiter.buckets) == 100
    clock[0] += 61  # every bucket is full again
    limiter.retry_after("10.0.1.1")
    assert list(limiter.buckets) == ["10.0.1.1"]


def test_rate_limit_answers_429_with_retry_after(make_client):
    with make_client(rate_limit_per_minute=3) as c:
        codes = [c.post("/api/evaluate", json={"text": "hello"}).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        r = c.post("/api/evaluate", json={"text": "hello"})
        assert int(r.headers["retry-after"]) >= 1 and r.json()["error"] == "rate_limited"
        assert c.get("/health").status_code == 200


def test_a_known_path_with_an_undeclared_method_gets_405_with_allow_and_unknown_paths_a_json_404(client):
    r = client.delete("/api/evaluate")
    assert r.status_code == 405 and r.headers["allow"] == "POST", (r.status_code, r.headers)
    assert r.json()["error"] == "method_not_allowed" and "POST" in r.json()["message"]
    r = client.put("/api/train")
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "POST"}
    r = client.get("/api/no-such-thing")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_the_openapi_document_has_no_catch_all_operation(client):
    paths = client.get("/api/openapi.json").json()["paths"]
    assert "/api/evaluate" in paths and not any("{rest" in p for p in paths), sorted(paths)


def test_ready_never_says_ready_before_the_preloaded_judge(settings, tiny, monkeypatch):
    """The preload loads the model, then the judge: /ready stays 503 until both are done, never
    200 in between and then 503 again."""
    import threading

    from app import evaluation
    from app.service import Service

    judge_may_load, loaded = threading.Event(), threading.Event()
    service, ready_when_model_loaded = Service(settings), []
    service.open()

    def load_model(req):
        service.base, service.model_state = tiny, "ready"
        ready_when_model_loaded.append(service.ready()[0])

    def load_judge():
        judge_may_load.wait(10)
        loaded.set()

    monkeypatch.setattr(service, "load_model", load_model)
    monkeypatch.setattr(evaluation, "load_judge", load_judge)
    service.preload()
    for _ in range(20):  # the model is loaded at once; the judge waits
        assert service.ready()[0] is False, service.ready()
        threading.Event().wait(0.01)
    assert ready_when_model_loaded == [False]
    judge_may_load.set()
    assert loaded.wait(10)
    for _ in range(100):
        if service.ready()[0]:
            break
        threading.Event().wait(0.01)
    assert service.ready() == (True, {"status": "ready", "model": "tiny", "judge": "ready"})
