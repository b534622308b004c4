"""Bad input at scale: schemathesis (pinned in requirements-dev.txt) against the
API's own OpenAPI document, on the real stack (gunicorn and the internal service
on loopback, tests/support/stack.py).

The CLI runs every phase (coverage, fuzzing, stateful; the document has no
examples) in positive and negative mode, with every check it has: no 5xx, each
status, content type, header and body as the document declares them, invalid
input refused and valid input accepted, deleted items gone. Its exit status is
not trusted alone: its JSON, NDJSON and JUnit reports are parsed and the case,
response and check counts asserted.

Then explicit cases for what generation does not reach, each answer checked by
schemathesis against the same document: broken and too deeply nested JSON,
wrong content types, bodies over MAX_CONTENT_LENGTH (with a length and chunked),
huge and negative limit, offset and id.
"""

import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter

import pytest
import requests
import schemathesis

from support.baking import default_answers
from support.processes import run
from support.stack import Stack

PACKAGE = default_answers()["__package"]
DOCUMENT = "/api/v1/openapi.json"
OPERATIONS = 7
# Fixed, so that CI repeats the same run; at 250 examples per operation the
# stateful phase brings the total well over the 1,000 cases asked for.
SEED = 2
MAX_EXAMPLES = 250
MIN_CASES = 1000
MAX_CONTENT_LENGTH = 131072


@pytest.fixture
def stack(default_project, tmp_path):
    stack = Stack(default_project, PACKAGE, tmp_path / "stack", harden=True)
    try:
        yield stack.start()
    finally:
        stack.stop()


def run_schemathesis(stack, work):
    reports = work / "reports"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        stack.base_url + DOCUMENT,
        "--checks",
        "all",
        "--mode",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--request-timeout",
        "10",
        # Nothing kept between runs, nothing written outside work.
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "json,ndjson,junit",
        "--report-json-path",
        str(reports / "run.json"),
        "--report-ndjson-path",
        str(reports / "events.ndjson"),
        "--report-junit-path",
        str(reports / "junit.xml"),
    ]
    completed = run(command, cwd=work, timeout=900, check=False)
    return completed, reports


def interactions(events_path):
    """Every request schemathesis made and the checks run on its answer, from the NDJSON."""
    for line in events_path.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        for case_id, interaction in recorder.get("interactions", {}).items():
            yield recorder["label"], interaction, recorder.get("checks", {}).get(case_id, [])


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(stack, tmp_path):
    completed, reports = run_schemathesis(stack, tmp_path)
    output = completed.stdout + completed.stderr
    assert (reports / "run.json").exists(), output
    run = json.loads((reports / "run.json").read_text(encoding="utf-8"))

    # The run as a whole: complete, every operation tested, nothing failed or errored.
    assert run["complete"] is True and run["stop_reason"] == "completed", output
    assert run["operations"]["selected"] == run["operations"]["tested"] == OPERATIONS, output
    assert run["operations"]["errored"] == 0, output
    cases = run["test_cases"]
    assert cases["generated"] >= MIN_CASES, cases
    assert cases["with_failures"] == 0 and cases["errored"] == 0, output
    assert run["failures"] == [] and run["errors"] == [], output
    for phase in ("coverage", "fuzzing", "stateful"):
        assert run["phases"][phase]["status"] == "success", (phase, output)

    # Each answer: its status, and every check's verdict on it.
    statuses, verdicts, total = Counter(), Counter(), 0
    for label, interaction, checks in interactions(reports / "events.ndjson"):
        total += 1
        response = interaction["response"]
        assert response is not None, (label, interaction["request"])
        statuses[label, interaction["request"]["method"], response["status_code"]] += 1
        for check in checks:
            verdicts[check["name"], check["status"]] += 1
    failed = {key: count for key, count in verdicts.items() if key[1] != "success"}
    server_errors = {key: count for key, count in statuses.items() if key[2] >= 500}
    schema_checked = verdicts["response_schema_conformance", "success"]
    print(
        f"\nschemathesis {schemathesis.__version__}: {cases['generated']} cases, {total} answers,"
        f" {schema_checked} bodies checked against the document; statuses"
        f" {sorted(Counter(status for *_, status in statuses.elements()).items())}"
    )
    assert total >= MIN_CASES
    assert server_errors == {}
    assert failed == {}
    assert verdicts["not_a_server_error", "success"] == total
    assert schema_checked >= MIN_CASES // 2

    # The negative cases reached the API's refusals, not only its happy paths.
    for label, status in [
        ("POST /api/v1/items", 400),  # a body that is not JSON
        ("POST /api/v1/items", 415),  # another media type
        ("POST /api/v1/items", 422),  # missing, extra or out-of-range fields
        ("PUT /api/v1/items/{id}", 400),
        ("PUT /api/v1/items/{id}", 415),
        ("PUT /api/v1/items/{id}", 422),
        ("GET /api/v1/items", 422),  # limit or offset out of range or not integers
        ("GET /api/v1/items/{id}", 404),
        ("GET /api/v1/items/{id}", 422),
    ]:
        method = label.split(" ", 1)[0]
        assert statuses[label, method, status] > 0, (label, status, sorted(statuses.items()))

    # The JUnit report agrees.
    suites = ET.parse(reports / "junit.xml").getroot()
    counted = [suites] if suites.tag == "testsuite" else list(suites.iter("testsuite"))
    assert sum(int(suite.get("tests", 0)) for suite in counted) >= OPERATIONS
    for suite in counted:
        assert int(suite.get("failures", 0)) == 0 and int(suite.get("errors", 0)) == 0, output
    assert completed.returncode == 0, output

    assert stack.internal.poll() is None and stack.api.poll() is None
    logs = stack.logs()
    assert "Traceback" not in logs and "unhandled error" not in logs, logs


JSON = {"Content-Type": "application/json"}
OVERSIZED = b'{"title": "' + b"a" * (MAX_CONTENT_LENGTH + 1000) + b'"}'
# Nested deeper than Python's JSON parser recurses, in far fewer bytes than the limit.
DEEP_ARRAY = b"[" * 50_000 + b"]" * 50_000
DEEP_OBJECT = b'{"a":' * 20_000 + b"1" + b"}" * 20_000


class Chunked(bytes):
    """A body sent chunked, without Content-Length: the limit must hold while reading."""

    def chunks(self, size=8192):
        for start in range(0, len(self), size):
            yield self[start : start + size]


# Valid JSON within the limit, and whitespace past it.
PADDED = Chunked(b'{"title": "x"}' + b" " * MAX_CONTENT_LENGTH)


# (method, path, OpenAPI path, headers, body, expected status)
EXPLICIT = [
    # Malformed JSON.
    ("POST", "/api/v1/items", "/api/v1/items", JSON, b'{"title": "x"', 400),
    ("POST", "/api/v1/items", "/api/v1/items", JSON, b'{"title": "x",}', 400),
    ("POST", "/api/v1/items", "/api/v1/items", JSON, b"{'title': 'x'}", 400),
    ("POST", "/api/v1/items", "/api/v1/items", JSON, b"", 400),
    ("POST", "/api/v1/items", "/api/v1/items", JSON, b'{"title": "\xff"}', 400),
    ("POST", "/api/v1/items", "/api/v1/items", JSON, DEEP_ARRAY, 400),
    ("POST", "/api/v1/items", "/api/v1/items", JSON, DEEP_OBJECT, 400),
    ("PUT", "/api/v1/items/1", "/api/v1/items/{id}", JSON, b"{", 400),
    ("PUT", "/api/v1/items/1", "/api/v1/items/{id}", JSON, DEEP_ARRAY, 400),
    # JSON, but not an object of the right fields.
    ("POST", "/api/v1/items", "/api/v1/items", JSON, b"[]", 422),
    ("POST", "/api/v1/items", "/api/v1/items", JSON, b"NaN", 422),
    ("POST", "/api/v1/items", "/api/v1/items", JSON, b'{"title": 1e999}', 422),
    ("POST", "/api/v1/items", "/api/v1/items", JSON, b'{"title": "\\ud800"}', 422),
    ("POST", "/api/v1/items", "/api/v1/items", JSON, b'{"title": "x", "admin": true}', 422),
    # Wrong content types.
    ("POST", "/api/v1/items", "/api/v1/items", {}, b'{"title": "x"}', 415),
    ("POST", "/api/v1/items", "/api/v1/items", {"Content-Type": "text/plain"}, b"x", 415),
    ("POST", "/api/v1/items", "/api/v1/items", {"Content-Type": "text/json"}, b"{}", 415),
    (
        "POST",
        "/api/v1/items",
        "/api/v1/items",
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"title=x",
        415,
    ),
    (
        "PUT",
        "/api/v1/items/1",
        "/api/v1/items/{id}",
        {"Content-Type": "multipart/form-data; boundary=b"},
        b'--b\r\nContent-Disposition: form-data; name="title"\r\n\r\nx\r\n--b--\r\n',
        415,
    ),
    # Bodies over MAX_CONTENT_LENGTH.
    ("POST", "/api/v1/items", "/api/v1/items", JSON, OVERSIZED, 413),
    ("PUT", "/api/v1/items/1", "/api/v1/items/{id}", JSON, OVERSIZED, 413),
    ("POST", "/api/v1/items", "/api/v1/items", JSON, Chunked(OVERSIZED), 413),
    ("PUT", "/api/v1/items/1", "/api/v1/items/{id}", JSON, Chunked(OVERSIZED), 413),
    ("POST", "/api/v1/items", "/api/v1/items", JSON, PADDED, 413),
    # ...but a body of up to exactly the limit is read whole, chunked or not.
    ("POST", "/api/v1/items", "/api/v1/items", JSON, Chunked(b'{"title": "chunked"}'), 201),
    ("POST", "/api/v1/items", "/api/v1/items", JSON, Chunked(PADDED[:MAX_CONTENT_LENGTH]), 201),
    ("POST", "/api/v1/items", "/api/v1/items", JSON, PADDED[:MAX_CONTENT_LENGTH], 201),
    # Huge, negative and malformed limit, offset and id.
    ("GET", "/api/v1/items?limit=" + "9" * 40, "/api/v1/items", {}, None, 422),
    ("GET", "/api/v1/items?limit=-1", "/api/v1/items", {}, None, 422),
    ("GET", "/api/v1/items?limit=0", "/api/v1/items", {}, None, 422),
    ("GET", "/api/v1/items?limit=101", "/api/v1/items", {}, None, 422),
    ("GET", "/api/v1/items?offset=-1", "/api/v1/items", {}, None, 422),
    ("GET", "/api/v1/items?offset=-" + "9" * 40, "/api/v1/items", {}, None, 422),
    ("GET", "/api/v1/items?offset=9223372036854775808", "/api/v1/items", {}, None, 422),
    ("GET", "/api/v1/items?offset=9223372036854775807", "/api/v1/items", {}, None, 200),
    ("GET", "/api/v1/items?limit=" + "9" * 4000, "/api/v1/items", {}, None, 422),
    ("GET", "/api/v1/items?limit=1.5&offset=x", "/api/v1/items", {}, None, 422),
    ("GET", "/api/v1/items?limit=%00", "/api/v1/items", {}, None, 422),
    ("GET", "/api/v1/items/0", "/api/v1/items/{id}", {}, None, 422),
    ("GET", "/api/v1/items/9223372036854775808", "/api/v1/items/{id}", {}, None, 422),
    ("GET", "/api/v1/items/" + "9" * 3000, "/api/v1/items/{id}", {}, None, 422),
    ("GET", "/api/v1/items/-1", "/api/v1/items/{id}", {}, None, 404),
    ("GET", "/api/v1/items/9223372036854775807", "/api/v1/items/{id}", {}, None, 404),
    ("DELETE", "/api/v1/items/9223372036854775807", "/api/v1/items/{id}", {}, None, 404),
]


def test_explicit_bad_input_is_refused_as_the_document_says(stack):
    document = requests.get(stack.base_url + DOCUMENT, timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    for method, path, template, headers, body, expected in EXPLICIT:
        data = body.chunks() if isinstance(body, Chunked) else body
        response = requests.request(
            method, stack.base_url + path, headers=headers, data=data, timeout=10
        )
        what = f"{method} {path[:60]} {headers} {type(body).__name__} {str(body)[:40]}"
        assert response.status_code == expected, (what, response.text[:300])
        declared = document["paths"][template][method.lower()]["responses"]
        assert str(response.status_code) in declared, what
        # schemathesis's own response_schema_conformance, against the served document.
        schema[template][method].validate_response(response)
        if expected >= 400:
            error = response.json()["error"]
            assert error["code"] and error["message"], what
    logs = stack.logs()
    assert "Traceback" not in logs and "unhandled error" not in logs, logs
