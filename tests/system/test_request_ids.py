"""One request id through every hop, on the real nginx front (tests/support/nginx.py)
before the real stack, both logging JSON at INFO.

A well-formed X-Request-ID from the client (the site file's map: 8 to 128 of
A-Z a-z 0-9 . _ : -) is kept; without one, or with a malformed one, nginx
makes its own. Either way the same id is in nginx's access log, the API's
access line, the internal service's line for the operation, the audit trail
(for a write) and the answer's X-Request-ID header. A malformed id reaches
no log at all.
"""

import json
import re
import secrets
import time

import pytest

from support.baking import default_answers
from support.nginx import fetch, front
from support.stack import Stack
from support.tools import needs_root

pytestmark = needs_root("nginx's master binds the test ports and starts its workers as www-data")

PACKAGE = default_answers()["__package"]
NGINX_REQUEST_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def traced(default_project, tmp_path_factory):
    """The stack with JSON logs at INFO, and nginx before it."""
    settings = {"LOG_LEVEL": "INFO", "LOG_FORMAT": "json"}
    stack = Stack(default_project, PACKAGE, tmp_path_factory.mktemp("traced"), True, settings)
    try:
        stack.start()
        with front(stack, default_project) as running:
            yield running
    finally:
        stack.stop()


def logs(traced):
    """Each log, by who wrote it: nginx's access log, the API's, the internal service's."""
    traced.stack.logs()  # flushes
    work = traced.stack.work_dir
    return {
        "nginx": traced.access_log,
        "api": work / "api.log",
        "internal": work / "internal.log",
    }


def entries(path, request_id):
    """The JSON lines of a log that carry request_id."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("{") and request_id in line:
            entry = json.loads(line)
            if entry.get("request_id") == request_id:
                found.append(entry)
    return found


def everywhere(traced, request_id, timeout=10.0):
    """The lines of each log with the id, once every log has one (each is written
    when its process is done with the request, a moment after the answer)."""
    deadline = time.monotonic() + timeout
    while True:
        found = {name: entries(path, request_id) for name, path in logs(traced).items()}
        if all(found.values()) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_clients_well_formed_id_is_in_every_log_and_the_answer(traced):
    sent = f"client-{secrets.token_hex(8)}"
    headers = {**traced.stack.bearer(), "X-Request-ID": sent}
    response = fetch(traced, "GET", "/api/v1/items?limit=1", headers=headers)
    assert response.status == 200, response.body
    assert response.headers["X-Request-ID"] == sent
    found = everywhere(traced, sent)
    assert all(found.values()), found
    [nginx] = found["nginx"]
    # The path without its query string, and nothing of the headers.
    assert (nginx["method"], nginx["path"], nginx["status"]) == ("GET", "/api/v1/items", 200)
    [api] = found["api"]
    assert (api["method"], api["route"], api["status"]) == ("GET", "/api/v1/items", 200)
    assert api["client"] == "127.0.0.1"  # the client's address, as nginx passed it on
    [internal] = found["internal"]
    assert internal["operation"].startswith("items.") and internal["outcome"] == "ok"


def test_without_an_id_nginx_makes_one_and_every_log_has_it(traced):
    response = fetch(traced, "POST", "/api/v1/items", body=b'{"title": "traced"}', headers={
        **traced.stack.bearer(), "Content-Type": "application/json"})  # fmt: skip
    assert response.status == 201, response.body
    made = response.headers["X-Request-ID"]
    assert NGINX_REQUEST_ID.fullmatch(made), made
    found = everywhere(traced, made)
    assert all(found.values()), found
    assert [entry["status"] for entry in found["nginx"] + found["api"]] == [201, 201]
    # The write's audit row names the same request.
    trail = traced.stack.admin("audit", "--limit", "1000").stdout
    assert made in trail, trail


@pytest.mark.parametrize(
    "sent",
    [
        "short",  # under 8
        "x" * 129,  # over 128
        "has spaces in it",
        "semi;colon;id",
        '"quoted-id-value"',
        "üñíçødé-request",
    ],
)
def test_a_malformed_id_is_replaced_and_logged_nowhere(traced, sent):
    headers = {**traced.stack.bearer(), "X-Request-ID": sent}
    response = fetch(traced, "GET", "/api/v1/items?limit=1", headers=headers)
    assert response.status == 200, response.body
    made = response.headers["X-Request-ID"]
    assert NGINX_REQUEST_ID.fullmatch(made), made
    assert all(everywhere(traced, made).values())
    for name, path in logs(traced).items():
        assert sent not in path.read_text(encoding="utf-8", errors="replace"), name
