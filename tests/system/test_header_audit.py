"""A scanner nobody here wrote audits the hardened responses: drheader, default rules.

drheader makes each request itself (its Python API, not its CLI, whose exit
status is 0 even when the connection fails) against the default project under
real gunicorn. Requests carry `X-Forwarded-Proto: https` from 127.0.0.1, as
nginx sends them, so HSTS is judged as a browser would see it over TLS. The
cross-origin isolation rules (COEP, COOP) are audited too.

A response hook records each status, so a request that went wrong cannot
pass the audit by answering something else.
"""

import json

import pytest
from drheader import Drheader

from support.stack import FAULT_PATH

VIA_TLS = {"X-Forwarded-Proto": "https"}
TOO_LARGE = 200_000  # bytes; the project's MAX_CONTENT_LENGTH is 131072

# name: (method, path, request kwargs, expected status)
CASES = {
    "json-200": ("get", "/api/v1/health", {}, 200),
    "json-201": ("post", "/api/v1/items", {"json": {"title": "audited"}}, 201),
    "json-400": ("post", "/api/v1/items", {"data": b"{broken", "json_type": True}, 400),
    "json-404": ("get", "/api/v1/items/987654321", {}, 404),
    "json-405": ("delete", "/api/v1/health", {}, 405),
    "json-413": ("post", "/api/v1/items", {"data": b"x" * TOO_LARGE, "json_type": True}, 413),
    "json-415": ("post", "/api/v1/items", {"data": b"title=x"}, 415),
    "json-422": ("post", "/api/v1/items", {"json": {"title": ""}}, 422),
    "json-500": ("get", FAULT_PATH, {}, 500),
    "html-page": ("get", "/", {}, 200),
    "static-js": ("get", "/static/app.js", {}, 200),
    "static-css": ("get", "/static/style.css", {}, 200),
}


def audit(stack, case):
    """drheader's findings for one case, after checking the status it got."""
    method, path, options, status = CASES[case]
    options = dict(options)
    headers = dict(VIA_TLS)
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
def test_drheader_finds_nothing_in_hardened_responses(hardened_stack, case):
    findings = audit(hardened_stack, case)
    assert findings == [], json.dumps(findings, indent=1)


def test_drheader_finds_problems_when_harden_is_off(plain_stack, capsys):
    """The same audit with harden off: every response has findings, so the scanner can fail."""
    counts = {case: len(audit(plain_stack, case)) for case in CASES}
    with capsys.disabled():
        print(f"\ndrheader findings with harden off: {counts}, total {sum(counts.values())}")
    assert all(count > 0 for count in counts.values()), counts
