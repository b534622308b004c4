"""What real gunicorn answers by itself, and bodies that do not arrive as announced:
every answer JSON in our shape, with our headers, naming neither gunicorn nor its limits."""

import json
import socket
import time

import pytest

from {{ cookiecutter.__package }} import contract

# The API checks no more than a token's form before it reads the body.
BEARER = f"Authorization: Bearer {contract.new_token()}\r\n".encode()

HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options")


def exchange(port, raw, shut_write=False, timeout=20):
    """Send RAW bytes to gunicorn; the status, headers (lower-case) and body it sends back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:])
    }
    return int(lines[0].split()[1]), headers, body


def assert_ours(status, headers, body, expected):
    assert status == expected, body
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] and error["message"]
    assert b"gunicorn" not in body.lower() and b"<" not in body
    for name in HEADERS:
        assert name.lower() in headers, name
    assert "server" not in headers


def line_of(length):
    return b"GET /api/v1/health?" + b"x" * length + b" HTTP/1.1\r\nHost: x\r\n\r\n"


def many_headers(count):
    fields = b"".join(b"X-Filler-%d: x\r\n" % number for number in range(count))
    return b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"


POST = b"POST /api/v1/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + BEARER


def chunked(body):
    return POST + b"Transfer-Encoding: chunked\r\n\r\n" + body


PARSE_ERRORS = {
    "request-line-6000": (line_of(6000), 414),
    "request-line-9000": (line_of(9000), 414),
    "101-headers": (many_headers(101), 431),
    "garbage": (b"NOT HTTP AT ALL\r\n\r\n", 400),
    "bad-version": (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    "unknown-coding": (
        b"POST /api/v1/items HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", PARSE_ERRORS)
def test_what_gunicorn_answers_itself_is_ours(start_api, case):
    raw, status = PARSE_ERRORS[case]
    _, headers, _ = answer = exchange(start_api("true"), raw)
    assert_ours(*answer, status)
    # It cannot tell http from https: HSTS goes along (a browser ignores it over http).
    assert "strict-transport-security" in headers


def test_bad_chunking_is_a_400_not_a_500(start_api):
    port = start_api("true")
    status, headers, body = exchange(port, chunked(b"zz\r\n{}\r\n0\r\n\r\n"))
    assert_ours(status, headers, body, 400)
    assert json.loads(body)["error"]["field"] == "body"


def test_a_body_cut_short_is_a_400_at_once(start_api):
    port = start_api("true")
    raw = POST + b"Content-Length: 100\r\n\r\n" + b'{"title": "sh'
    started = time.monotonic()
    assert_ours(*exchange(port, raw, shut_write=True), 400)
    assert time.monotonic() - started < 5


def test_a_body_that_stalls_is_a_408_after_the_body_timeout(start_api):
    port = start_api("true", BODY_TIMEOUT=1.0)
    raw = POST + b"Content-Length: 100\r\n\r\n" + b'{"title": "sl'
    started = time.monotonic()
    assert_ours(*exchange(port, raw), 408)
    # Not gunicorn's worker timeout (30 s): the body's own.
    assert time.monotonic() - started < 10
