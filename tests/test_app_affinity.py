"""Session affinity on Fly.io (app/affinity.py): the UI stays on the machine that first served the
browser, through Fly's `fly-replay`; the API and the probes are served wherever they land."""

import pytest

from app.affinity import COOKIE, pinned_machine


@pytest.fixture
def fly(make_client):
    with make_client(fly_machine_id="3d8d9e1b") as c:
        yield c


def test_the_first_ui_response_pins_the_browser_to_its_machine(fly):
    page = fly.get("/")
    assert page.status_code == 200 and "fly-replay" not in page.headers
    assert f"{COOKIE}=3d8d9e1b" in page.headers["set-cookie"] and "HttpOnly" in page.headers["set-cookie"]
    again = fly.get("/", cookies={COOKIE: "3d8d9e1b"})
    assert again.status_code == 200 and "set-cookie" not in again.headers


def test_a_ui_request_on_another_machine_is_replayed_to_the_browsers_machine(fly):
    elsewhere = fly.get("/gradio_api/info", cookies={COOKIE: "a1b2c3"})
    assert elsewhere.status_code == 421
    assert elsewhere.headers["fly-replay"] == "prefer_instance=a1b2c3"
    assert elsewhere.json()["error"] == "misdirected"


def test_a_replayed_request_is_served_where_it_lands_and_pinned_there(fly):
    landed = fly.get("/", cookies={COOKIE: "a1b2c3"}, headers={"fly-replay-src": "instance=a1b2c3;state=x"})
    assert landed.status_code == 200 and f"{COOKIE}=3d8d9e1b" in landed.headers["set-cookie"]


def test_the_api_and_the_probes_are_served_on_any_machine(fly):
    for path in ("/api/runs", "/health", "/ready", "/metrics"):
        r = fly.get(path, cookies={COOKIE: "a1b2c3"})
        assert r.status_code == 200 and "fly-replay" not in r.headers, path


def test_off_fly_nothing_is_pinned_or_replayed(client):
    r = client.get("/", cookies={COOKIE: "a1b2c3"})
    assert r.status_code == 200 and "fly-replay" not in r.headers and COOKIE not in r.headers.get("set-cookie", "")


def test_a_cookie_that_is_not_a_machine_id_is_never_echoed_into_a_header():
    assert pinned_machine(b"cai_machine=a1b2c3") == "a1b2c3"
    for bad in (b"cai_machine=a1b2\\r\\nx: y", b'cai_machine="a b"', b"cai_machine=", b"other=a1", b"\xff=;;"):
        assert pinned_machine(bad) is None, bad
