"""Bad input at scale: schemathesis (pinned in requirements-dev.txt) against the
API's own OpenAPI document, on the real stack (gunicorn and the internal service
on loopback, tests/support/stack.py). The full run goes to a project of each
database answer: SQLite, and PostgreSQL on a private cluster.

The CLI runs every phase (coverage, fuzzing, stateful; the document has no
examples) in positive and negative mode, with every check it has: no 5xx, each
status, content type, header and body as the document declares them, invalid
input refused and valid input accepted, deleted items gone, and (ignored_auth)
the declared bearer token enforced. Every request carries a valid token with
every scope (-H). Its exit status is not trusted alone: its JSON, NDJSON and
JUnit reports are parsed and the case, response and check counts asserted.

A second, smaller run sends no token at all: every operation the document
protects must answer 401 with the challenge, valid input or not, and the
others (health, ready) must not.

Then explicit cases for what generation does not reach, each answer checked by
schemathesis against the same document: broken and too deeply nested JSON,
wrong content types, bodies over MAX_CONTENT_LENGTH (with a length and chunked),
huge and negative limit, offset and id.
"""

import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import requests
import schemathesis

from support.baking import default_answers
from support.postgresql import app_database
from support.processes import clean_env, run
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


@pytest.fixture(params=["sqlite", "postgresql"])
def either_stack(request, tmp_path):
    """The stack of a project with each database answer: the full run goes to both."""
    if request.param == "sqlite":
        yield request.getfixturevalue("stack")
        return
    project = request.getfixturevalue("postgresql_project")
    with app_database(PACKAGE) as url:
        stack = Stack(project, PACKAGE, tmp_path / "stack", True, {"DATABASE_URL": url})
        try:
            yield stack.start()
        finally:
            stack.stop()


# The full run: every phase and check, positive and negative, with the token.
FULL_RUN = [
    "--checks", "all",
    "--mode", "all",
    "--phases", "examples,coverage,fuzzing,stateful",
    "--max-examples", str(MAX_EXAMPLES),
]  # fmt: skip
# Without a token: what can hold of a 401 (no 2xx is owed to valid input), and
# no Authorization header made up by schemathesis either.
ANONYMOUS_RUN = [
    "--checks",
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_headers_conformance,response_schema_conformance",
    "--mode", "all",
    "--phases", "coverage,fuzzing",
    "--max-examples", "30",
    "--generation-with-security-parameters", "false",
    # Nothing secret to hide, and the challenge header must be seen in the report.
    "--output-sanitize", "false",
]  # fmt: skip


def run_schemathesis(stack, work, options, headers=None):
    """The CLI against the stack's document, with options and -H headers; its reports
    (credentials are sanitized out of them: they hold no token)."""
    reports = work / "reports"
    command = [sys.executable, "-m", "schemathesis.cli", "run", stack.base_url + DOCUMENT]
    command += options
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command += [
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
    env = {**clean_env(), "SCHEMATHESIS_HOOKS": "support.schemathesis_hooks"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    completed = run(command, cwd=work, env=env, timeout=900, check=False)
    return completed, reports


def interactions(events_path, with_meta=False):
    """Every request schemathesis made and the checks run on its answer, from the NDJSON;
    with_meta, also how its case was generated (modes by component, phase)."""
    for line in events_path.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        for case_id, interaction in recorder.get("interactions", {}).items():
            found = [recorder["label"], interaction, recorder.get("checks", {}).get(case_id, [])]
            if with_meta:
                case = recorder.get("cases", {}).get(case_id, {})
                found.append(case.get("value", {}).get("meta") or {})
            yield tuple(found)


def assert_run_clean(run, output, operations=OPERATIONS):
    """The run as a whole: complete, every operation tested, nothing failed or errored."""
    assert run["complete"] is True and run["stop_reason"] == "completed", output
    assert run["operations"]["selected"] == run["operations"]["tested"] == operations, output
    assert run["operations"]["errored"] == 0, output
    cases = run["test_cases"]
    assert cases["with_failures"] == 0 and cases["errored"] == 0, output
    assert run["failures"] == [] and run["errors"] == [], output


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(
    either_stack, tmp_path
):
    stack = either_stack
    completed, reports = run_schemathesis(stack, tmp_path, FULL_RUN, stack.bearer())
    output = completed.stdout + completed.stderr
    assert (reports / "run.json").exists(), output
    run = json.loads((reports / "run.json").read_text(encoding="utf-8"))
    assert_run_clean(run, output)
    cases = run["test_cases"]
    assert cases["generated"] >= MIN_CASES, cases
    for phase in ("coverage", "fuzzing", "stateful"):
        assert run["phases"][phase]["status"] == "success", (phase, output)

    # Each answer: its status, and every check's verdict on it. The answers that
    # no check judged are schemathesis's own probes (ignored_auth: the same
    # request without the token, or with a made-up one): each must be a 401.
    statuses, verdicts, total, probes = Counter(), Counter(), 0, Counter()
    for label, interaction, checks in interactions(reports / "events.ndjson"):
        total += 1
        response = interaction["response"]
        assert response is not None, (label, interaction["request"])
        statuses[label, interaction["request"]["method"], response["status_code"]] += 1
        if not checks:
            probes[response["status_code"]] += 1
        for check in checks:
            verdicts[check["name"], check["status"]] += 1
    failed = {key: count for key, count in verdicts.items() if key[1] != "success"}
    server_errors = {key: count for key, count in statuses.items() if key[2] >= 500}
    schema_checked = verdicts["response_schema_conformance", "success"]
    print(
        f"\nschemathesis {schemathesis.__version__}: {cases['generated']} cases, {total} answers"
        f" ({sum(probes.values())} of them auth probes), {schema_checked} bodies checked"
        f" against the document, {len(server_errors)} 5xx, {len(failed)} failed checks; statuses"
        f" {sorted(Counter(status for *_, status in statuses.elements()).items())}"
    )
    assert total >= MIN_CASES
    assert server_errors == {}
    assert failed == {}
    assert set(probes) <= {401}, probes
    assert verdicts["not_a_server_error", "success"] == total - sum(probes.values())
    assert schema_checked >= MIN_CASES // 2
    # schemathesis saw the token enforced (it probes each operation without it).
    assert verdicts["ignored_auth", "success"] >= MIN_CASES // 2

    # The token opened every operation, and the negative cases reached the API's
    # refusals, not only its happy paths.
    for label, status in [
        ("GET /api/v1/items", 200),
        ("POST /api/v1/items", 201),
        ("GET /api/v1/items/{id}", 200),
        ("PUT /api/v1/items/{id}", 200),
        ("DELETE /api/v1/items/{id}", 204),
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
    # An id has one spelling (ASCII digits, no leading zero, 19 at most): anything else is 404.
    ("GET", "/api/v1/items/0", "/api/v1/items/{id}", {}, None, 404),
    ("GET", "/api/v1/items/9223372036854775808", "/api/v1/items/{id}", {}, None, 422),
    ("GET", "/api/v1/items/" + "9" * 3000, "/api/v1/items/{id}", {}, None, 404),
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
            method,
            stack.base_url + path,
            headers={**headers, **stack.bearer()},
            data=data,
            timeout=10,
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


# ---------------------------------------------------------------- without a token

CHALLENGE = f'Bearer realm="{default_answers()["project"]}"'
# Without a token these answer as ever; every other operation needs one.
OPEN_PATHS = ("/api/v1/health", "/api/v1/ready", DOCUMENT, "/")


def protected_operations(document):
    """Labels of the operations whose security a request without credentials cannot meet."""
    found = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            security = operation.get("security", document.get("security", []))
            if security and {} not in security:
                found.add(f"{method.upper()} {path}")
    return found


@pytest.fixture(scope="module")
def anonymous_run(default_project, tmp_path_factory):
    """One schemathesis run without any token, on a stack of its own: the document,
    [(label, method sent, response, meta)], and what the open paths answered."""
    work = tmp_path_factory.mktemp("anonymous")
    stack = Stack(default_project, PACKAGE, work / "stack", harden=True)
    try:
        stack.start()
        document = requests.get(stack.base_url + DOCUMENT, timeout=10).json()
        completed, reports = run_schemathesis(stack, work, ANONYMOUS_RUN)
        output = completed.stdout + completed.stderr
        assert (reports / "run.json").exists(), output
        assert_run_clean(json.loads((reports / "run.json").read_text("utf-8")), output)
        answers = [
            (label, interaction["request"]["method"], interaction["response"], meta)
            for label, interaction, _, meta in interactions(reports / "events.ndjson", True)
        ]
        opened = {path: stack.fetch("GET", path, token=None).status for path in OPEN_PATHS}
        logs = stack.logs()
    finally:
        stack.stop()
    assert "Traceback" not in logs, logs
    return document, answers, opened


def refusals_by_label(answers, protected, wanted_mode):
    """{label: Counter of statuses} of the cases of wanted_mode ("positive" or
    "negative") that reached a protected operation's route, with whether each
    401 carried the challenge."""
    found = {}
    for label, method, response, meta in answers:
        if label not in protected or meta.get("generation", {}).get("mode") != wanted_mode:
            continue
        # Another method (OPTIONS, PATCH, ...) is another route; a path parameter made
        # invalid can miss the route too: their 200 or 404 or 405 says nothing of auth.
        if method != label.split()[0]:
            continue
        if meta.get("components", {}).get("path", {}).get("mode") == "negative":
            continue
        challenges = response["headers"].get("www-authenticate") or [""]
        found.setdefault(label, Counter())[response["status_code"], challenges[0] == CHALLENGE] += 1
    return found


def test_without_a_token_every_protected_operation_answers_401(anonymous_run):
    """Valid input and no token: 401 with the challenge from each protected operation;
    health, ready, the document and the page answer 200."""
    document, answers, opened = anonymous_run
    protected = protected_operations(document)
    assert {"GET /api/v1/items", "POST /api/v1/items", "PUT /api/v1/items/{id}"} <= protected
    assert len(protected) == OPERATIONS - 2, protected  # all but health and ready
    found = refusals_by_label(answers, protected, "positive")
    print(f"\nwithout a token, valid input: {found}")
    assert set(found) == protected, found
    assert all(set(counts) == {(401, True)} for counts in found.values()), found
    unprotected = Counter(
        (label, response["status_code"])
        for label, method, response, _ in answers
        if label not in protected and method == label.split()[0]
    )
    assert unprotected and {status for _, status in unprotected} == {200}, unprotected
    assert opened == dict.fromkeys(OPEN_PATHS, 200), opened


def test_without_a_token_even_invalid_input_answers_401(anonymous_run):
    """Invalid input and no token: still 401, before the body or the query is judged
    (a 400, 415 or 422 would tell an anonymous client about the request it may not make)."""
    document, answers, _ = anonymous_run
    protected = protected_operations(document)
    found = refusals_by_label(answers, protected, "negative")
    print(f"\nwithout a token, invalid input: {found}")
    # DELETE has nothing to make invalid but its path.
    with_input = {"GET /api/v1/items", "POST /api/v1/items", "PUT /api/v1/items/{id}"}
    assert with_input <= set(found) <= protected, found
    judged = {label: counts for label, counts in found.items() if set(counts) != {(401, True)}}
    assert judged == {}, judged
