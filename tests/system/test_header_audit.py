"""A scanner nobody here wrote audits the hardened responses: drheader, default rules.

drheader makes each request itself (its Python API, not its CLI, whose exit
status is 0 even when the connection fails) against the default project under
real gunicorn. Requests carry `X-Forwarded-Proto: https` from 127.0.0.1, as
nginx sends them, so HSTS is judged as a browser would see it over TLS. The
cross-origin isolation rules (COEP, COOP) are audited too.

The refusals of authentication are audited like any answer: 401 without a
token and with an unknown one, 403 for a token without the scope, and 429
from the brute-force brake, on a stack of its own whose brake trips after
BRAKE failures.

A response hook records each status, so a request that went wrong cannot
pass the audit by answering something else.
"""

import json

import pytest
from drheader import Drheader

from support.baking import default_answers
from support.stack import FAULT_PATH, Stack

PACKAGE = default_answers()["__package"]
VIA_TLS = {"X-Forwarded-Proto": "https"}
TOO_LARGE = 200_000  # bytes; the project's MAX_CONTENT_LENGTH is 131072
# AUTH_FAILURES of the braked stacks: the brake trips after this many.
BRAKE = 3

# Who asks: a token with every scope, none, one that may only read, one of the
# right form that was never minted, or a valid one from a client the brake refuses.
EVERY, NOBODY, READER, UNKNOWN, BRAKED = "every scope", "nobody", "reader", "unknown", "braked"

# name: (method, path, request kwargs, expected status, who asks)
CASES = {
    "json-200": ("get", "/api/v1/health", {}, 200, EVERY),
    "json-201": ("post", "/api/v1/items", {"json": {"title": "audited"}}, 201, EVERY),
    "json-400": ("post", "/api/v1/items", {"data": b"{broken", "json_type": True}, 400, EVERY),
    "json-401": ("post", "/api/v1/items", {"json": {"title": "anonymous"}}, 401, NOBODY),
    "json-401-invalid": ("get", "/api/v1/items", {}, 401, UNKNOWN),
    "json-403": ("post", "/api/v1/items", {"json": {"title": "read only"}}, 403, READER),
    "json-404": ("get", "/api/v1/items/987654321", {}, 404, EVERY),
    "json-405": ("delete", "/api/v1/health", {}, 405, EVERY),
    "json-413": (
        "post",
        "/api/v1/items",
        {"data": b"x" * TOO_LARGE, "json_type": True},
        413,
        EVERY,
    ),
    "json-415": ("post", "/api/v1/items", {"data": b"title=x"}, 415, EVERY),
    "json-422": ("post", "/api/v1/items", {"json": {"title": ""}}, 422, EVERY),
    "json-429": ("get", "/api/v1/items", {}, 429, BRAKED),
    "json-500": ("get", FAULT_PATH, {}, 500, EVERY),
    "html-page": ("get", "/", {}, 200, EVERY),
    "static-js": ("get", "/static/app.js", {}, 200, EVERY),
    "static-css": ("get", "/static/style.css", {}, 200, EVERY),
}


@pytest.fixture(scope="module")
def braked(default_project, tmp_path_factory):
    """braked(harden) -> a stack of its own (AUTH_FAILURES=BRAKE) whose brake is
    tripped for this client, made on first use; all stopped at the end."""
    stacks = {}

    def get(harden):
        if harden not in stacks:
            work = tmp_path_factory.mktemp("braked")
            stacks[harden] = Stack(
                default_project, PACKAGE, work, harden, settings={"AUTH_FAILURES": BRAKE}
            )
            stacks[harden].start()
        stacks[harden].trip_brake(attempts=BRAKE + 2)
        return stacks[harden]

    try:
        yield get
    finally:
        for stack in stacks.values():
            stack.stop()


def asking(stack, who, braked):
    """The stack to ask and the Authorization header, for who."""
    if who == BRAKED:
        stack = braked(stack.harden)
    token = {
        EVERY: stack.token,
        NOBODY: None,
        READER: stack.token_with("items:read"),
        UNKNOWN: stack.unknown_token(),
        BRAKED: stack.token,
    }[who]
    return stack, stack.bearer(token)


def audit(stack, case, braked):
    """drheader's findings for one case, after checking the status it got."""
    method, path, options, status, who = CASES[case]
    stack, authorization = asking(stack, who, braked)
    options = dict(options)
    headers = {**VIA_TLS, **authorization}
    if options.pop("json_type", False):
        headers["Content-Type"] = "application/json"
    if "json" in options:
        options["data"] = json.dumps(options.pop("json")).encode()
        headers["Content-Type"] = "application/json"
    seen = []
    scanner = Drheader(
        url=stack.base_url + path,
        method=method,
        headers=headers,
        hooks={"response": lambda response, **_: seen.append(response.status_code)},
        allow_redirects=False,
        **options,
    )
    assert seen == [status], f"{case}: expected {status}, got {seen}\n{stack.logs()}"
    return scanner.analyze(cross_origin_isolated=True)


@pytest.mark.parametrize("case", CASES)
def test_drheader_finds_nothing_in_hardened_responses(hardened_stack, braked, case):
    findings = audit(hardened_stack, case, braked)
    assert findings == [], json.dumps(findings, indent=1)


def test_drheader_finds_problems_when_harden_is_off(plain_stack, braked, capsys):
    """The same audit with harden off: every response has findings, so the scanner can fail."""
    counts = {case: len(audit(plain_stack, case, braked)) for case in CASES}
    with capsys.disabled():
        print(f"\ndrheader findings with harden off: {counts}, total {sum(counts.values())}")
    assert all(count > 0 for count in counts.values()), counts
