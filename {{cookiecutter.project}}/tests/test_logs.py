"""Logs: one access line per request from the API, one line per operation from the
internal service, the same request id in both and in the answer; never a token or a body."""

import json
import time
import urllib.request

import pytest

from .support import mint_over_the_wire, start_pair

PRIVATE_TITLE = "a body that must never be logged"


def call(port, method, path, token=None, request_id=None, payload=None):
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if request_id:
        request.add_header("X-Request-ID", request_id)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            return answer.status, answer.headers["X-Request-ID"]
    except urllib.error.HTTPError as error:
        return error.code, error.headers["X-Request-ID"]


def lines(path, wanted, timeout=5.0):
    """The log's lines, once at least WANTED of them hold a request id (lines flush at once)."""
    deadline = time.monotonic() + timeout
    while True:
        found = path.read_text(encoding="utf-8").splitlines()
        if sum("request_id" in line for line in found) >= wanted or time.monotonic() > deadline:
            return found


@pytest.fixture(params=["text", "json"])
def pair(request, spawn, tmp_path):
    api, internal = start_pair(spawn, tmp_path, LOG_FORMAT=request.param)
    return request.param, api, internal, tmp_path


def test_one_request_id_runs_through_both_processes_and_the_answer(pair):
    log_format, api, internal, work = pair
    token = mint_over_the_wire(f"127.0.0.1:{internal}")
    # From 127.0.0.1, the trusted proxy: its well-formed id is kept.
    status, echoed = call(api, "POST", "/api/v1/items", token, "probe-1234567890", {"title": "x"})
    assert (status, echoed) == (201, "probe-1234567890")
    status, made = call(api, "GET", "/api/v1/items/1", token)
    assert status == 200 and len(made) == 32
    for request_id in ("probe-1234567890", made):
        api_line = [line for line in lines(work / "api.log", 2) if request_id in line]
        internal_line = [line for line in lines(work / "internal.log", 2) if request_id in line]
        assert len(api_line) == 1 and len(internal_line) == 1, (api_line, internal_line)
    if log_format == "json":
        access = json.loads(api_line[0])
        assert access["route"] == "/api/v1/items/<id:id>" and access["status"] == 200
        assert {"time", "client", "method", "duration_ms", "internal_ms"} <= set(access)
        operation = json.loads(internal_line[0])
        assert (operation["operation"], operation["outcome"]) == ("items.get", "ok")


def test_no_token_header_or_body_is_ever_logged(pair):
    _, api, internal, work = pair
    token = mint_over_the_wire(f"127.0.0.1:{internal}")
    call(api, "POST", "/api/v1/items", token, payload={"title": PRIVATE_TITLE})
    call(api, "GET", "/api/v1/items", "{{ cookiecutter.__package }}_" + "x" * 49)
    call(api, "DELETE", "/api/v1/items/1", token)
    logged = (work / "api.log").read_text() + (work / "internal.log").read_text()
    assert "request_id" in logged
    for secret in (token, token[-20:], PRIVATE_TITLE, "Bearer", "Authorization"):
        assert secret not in logged, secret
