"""The generated nginx site file, run by Debian's real nginx in front of the real gunicorn.

A test copy of deploy/nginx/PROJECT.conf from the default project differs only
in what a test has to change: its listen addresses (free ports on loopback),
a self-signed certificate made here, the gunicorn port of the running stack,
and its http-level names (made unique). Everything else is tested as
generated, inside a minimal nginx.conf that keeps the Debian nginx.conf
defaults the site file has to override (TLS 1.0 and 1.1 on, gzip on); see
support/nginx.py.

A second copy of the same file, on other ports, proxies to a port where
nothing listens: that is how nginx's own 502 is made, and how a 413 is known
to come from nginx rather than from the app. The nginx_front fixture
(tests/system/conftest.py) runs both. test_probe_matrix.py sends the front
its malformed and extreme requests.

Needs root (nginx's workers run as www-data, like Debian's) and the packages
nginx and libnginx-mod-http-headers-more-filter; CI installs them.
"""

import http.client
import json
import re
import socket
import ssl
import time
from types import SimpleNamespace

import pytest
from drheader import Drheader

from support.nginx import (
    DOMAIN,
    PROJECT,
    fetch,
    handshake,
    resolving,
    security_headers,
    tls_context,
)
from support.probes import CLOSED, check, connect, exchange, h2_exchange
from support.tools import needs_root

pytestmark = needs_root("nginx's master binds the test ports and starts its workers as www-data")

MAX_CONTENT_LENGTH = 131072  # the app's limit, and client_max_body_size 128k
HSTS = "max-age=31536000; includeSubDomains"
# TLS 1.2 suites an ECDSA certificate could use, but without AEAD.
CBC_SUITES = ("ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA")
# nginx's own $request_id: 32 hex digits (a client's well-formed id is kept instead).
NGINX_REQUEST_ID = re.compile(r"[0-9a-f]{32}")
REALM = f'Bearer realm="{PROJECT}"'

# ---------------------------------------------------------------- helpers


def assert_anonymous(response):
    """Neither a Server header nor nginx's name in the body, whatever the status."""
    assert response.headers.get_all("Server") is None, (response.status, response.headers)
    assert b"nginx" not in response.body.lower(), (response.status, response.body)


def error_of(response, status, code):
    """An error response in the app's shape: {"error": {"code": ..., "message": ...}}."""
    assert response.status == status, (response.status, response.body)
    assert response.headers.get_content_type() == "application/json"
    payload = json.loads(response.body)
    assert list(payload) == ["error"], payload
    assert {"code", "message"} <= set(payload["error"]), payload
    assert payload["error"]["code"] == code, payload
    return payload["error"]


def nginx_error(front, response, status, code):
    """An error nginx wrote itself: the app's shape, exactly the app's headers, no name."""
    error = error_of(response, status, code)
    assert sorted(error) == ["code", "message"], error
    seen = security_headers(response.headers.items())
    seen.pop("retry-after", None)
    assert seen == front.app_headers, (seen, front.app_headers)
    assert_anonymous(response)


def item_body(size):
    """A JSON item of exactly size bytes; the app refuses it (body too long), but reads it."""
    skeleton = json.dumps({"title": "limit", "body": ""}).encode()
    return json.dumps({"title": "limit", "body": "x" * (size - len(skeleton))}).encode()


# ---------------------------------------------------------------- nginx


# ---------------------------------------------------------------- tests


def test_nginx_accepts_the_generated_site_file_without_warnings(nginx_front):
    output = nginx_front.check_output
    assert "syntax is ok" in output, output
    assert "test is successful" in output, output
    assert "[warn]" not in output and "[emerg]" not in output, output


def test_port_80_only_redirects_to_https(nginx_front):
    addresses = ["127.0.0.1", "::1"] if nginx_front.ipv6 else ["127.0.0.1"]
    for address in addresses:
        for method in ("GET", "POST"):
            response = fetch(nginx_front, method, "/api/v1/health?x=1", tls=False, address=address)
            assert response.status == 301, (address, method, response.status)
            assert response.headers["Location"] == f"https://{DOMAIN}/api/v1/health?x=1"
            # No nginx page either: the redirect's body is empty.
            assert response.body == b""
            assert_anonymous(response)
            # HSTS over plain http means nothing; neither layer sends it there.
            assert response.headers.get_all("Strict-Transport-Security") is None


# Request lines and Host headers that still name this site on port 80, each
# with the path it asks for: the redirect goes to the configured name, with
# no port, whatever the client wrote.
OUR_NAME_SPELLED = {
    "upper case": (b"GET /a?b=1 HTTP/1.1\r\nHost: EXAMPLE.COM\r\n\r\n", "/a?b=1"),
    "trailing dot": (b"GET /a HTTP/1.1\r\nHost: example.com.\r\n\r\n", "/a"),
    "another port": (b"GET /a HTTP/1.1\r\nHost: example.com:8443\r\n\r\n", "/a"),
    # The request line's name wins over the Host header (RFC 9112, 3.2.2).
    "absolute form, foreign Host": (
        b"GET http://example.com/a HTTP/1.1\r\nHost: attacker.example\r\n\r\n", "/a",
    ),
}  # fmt: skip


def test_port_80_redirects_to_the_configured_name_never_the_clients(nginx_front):
    for case, (request, path) in OUR_NAME_SPELLED.items():
        response = exchange(nginx_front, request, tls=False)
        assert response.status == 301, (case, response)
        assert dict(response.headers)["location"] == f"https://{DOMAIN}{path}", (case, response)
        assert response.body == b"", (case, response)


# A request for a name that is not ours, on either port: (port, request).
FOREIGN = {
    "80: foreign Host": ("http", b"GET /a HTTP/1.1\r\nHost: attacker.example\r\n\r\n"),
    "80: foreign name in the request line": (
        "http", b"GET http://attacker.example/a HTTP/1.1\r\nHost: example.com\r\n\r\n",
    ),
    "80: no name (HTTP/1.0)": ("http", b"GET /a HTTP/1.0\r\n\r\n"),
    "80: not HTTP at all": ("http", b"NOT HTTP AT ALL\r\n\r\n"),
    "443: foreign Host": ("https", b"GET /a HTTP/1.1\r\nHost: attacker.example\r\n\r\n"),
    "443: TRACE for a foreign Host": (
        "https", b"TRACE / HTTP/1.1\r\nHost: attacker.example\r\n\r\n",
    ),
    "443: plain http, no name": ("https-plain", b"GET /api/v1/health HTTP/1.0\r\n\r\n"),
}  # fmt: skip


def test_a_host_that_is_not_ours_is_closed_on_both_ports(nginx_front):
    """nginx's default server closes the connection (444) with no answer at all."""
    for case, (port, request) in FOREIGN.items():
        tls = port == "https"
        number = nginx_front.http_port if port == "http" else nginx_front.https_port
        outcome = exchange(nginx_front, request, tls=tls, port=number)
        assert check(outcome, CLOSED, nginx_front.app_headers) == [], (case, outcome)
        assert outcome.elapsed < 5, (case, outcome)

    # Over HTTP/2 the stream is reset: the connection is ours, the name is not.
    stream = [(b":method", b"GET"), (b":scheme", b"https")]
    stream += [(b":authority", b"attacker.example"), (b":path", b"/api/v1/health")]
    outcome = h2_exchange(nginx_front, stream)
    assert check(outcome, CLOSED, nginx_front.app_headers) == [], outcome

    # TLS for another name, or for none (an address), gets no certificate at all.
    for name in ("attacker.example", None):
        with pytest.raises(ssl.SSLError) as refused:
            connect(nginx_front, sni=name).close()
        assert refused.value.reason == "TLSV1_UNRECOGNIZED_NAME", (name, refused.value)


def test_https_serves_the_api_through_nginx(nginx_front):
    response = fetch(nginx_front, "GET", "/api/v1/health")
    assert response.status == 200, (response.status, response.body, nginx_front.logs())
    assert response.headers.get_content_type() == "application/json"
    assert json.loads(response.body) == {"status": "ok"}
    # Sent by the app (nginx told it the scheme), not by nginx: exactly once.
    assert response.headers.get_all("Strict-Transport-Security") == [HSTS]
    assert_anonymous(response)

    page = fetch(nginx_front, "GET", "/")
    assert page.status == 200
    assert page.headers.get_content_type() == "text/html"
    assert page.headers.get_all("Strict-Transport-Security") == [HSTS]
    assert_anonymous(page)


# name: (method, path, request kwargs, expected status, which copy answers);
# requests for items carry the stack's token, unless the case is about its absence.
AUDIT_CASES = {
    "json-200": ("get", "/api/v1/health", {}, 200, "live"),
    "json-401": ("post", "/api/v1/items", {"data": b'{"title": "anonymous"}'}, 401, "live"),
    "json-404": ("get", "/api/v1/items/987654321", {}, 404, "live"),
    "html-page": ("get", "/", {}, 200, "live"),
    "static-js": ("get", "/static/app.js", {}, 200, "live"),
    # nginx's own answers, where the app is not there to send the headers.
    "nginx-413": ("post", "/api/v1/items", {"data": b"x" * (MAX_CONTENT_LENGTH + 1)}, 413, "live"),
    "nginx-502": ("get", "/api/v1/health", {}, 502, "dead"),
}


def audit(front, case):
    """drheader's findings for one case, after checking what came back.

    requests connects to https://example.com, which resolves to 127.0.0.1
    here: it sends the name in SNI, as any client must (a handshake without
    it is refused), and as the Host header.
    """
    method, path, options, status, copy = AUDIT_CASES[case]
    port = front.https_port if copy == "live" else front.dead_https_port
    headers = {}
    if "data" in options:
        headers["Content-Type"] = "application/json"
    if path.startswith("/api/v1/items") and status != 401:
        headers.update(front.stack.bearer())
    seen = []

    def record(response, **_):
        raw = response.raw.headers
        seen.append(
            (response.status_code, raw.getlist("Strict-Transport-Security"), raw.getlist("Server"))
        )

    with resolving(DOMAIN, "127.0.0.1"):
        scanner = Drheader(
            url=f"https://{DOMAIN}:{port}{path}",
            method=method,
            headers=headers,
            verify=front.cert,
            hooks={"response": record},
            allow_redirects=False,
            **options,
        )
    # The expected status, HSTS exactly once, no Server header.
    assert seen == [(status, [HSTS], [])], f"{case}: {seen}\n{front.logs()}"
    return scanner.analyze(cross_origin_isolated=True)


def test_drheader_finds_nothing_through_nginx(nginx_front, capsys):
    """drheader's default rules, cross-origin isolation included, over TLS through nginx."""
    findings = {case: audit(nginx_front, case) for case in AUDIT_CASES}
    counts = {case: len(found) for case, found in findings.items()}
    with capsys.disabled():
        total = sum(counts.values())
        print(f"\ndrheader findings through nginx over TLS: {counts}, total {total}")
    problems = {case: found for case, found in findings.items() if found}
    assert problems == {}, json.dumps(problems, indent=1)


def test_nginx_own_errors_are_json_with_the_security_headers(nginx_front):
    # Nothing behind the second copy: nginx itself answers 502.
    response = fetch(nginx_front, "GET", "/api/v1/health", port=nginx_front.dead_https_port)
    nginx_error(nginx_front, response, 502, "bad_gateway")
    assert response.headers.get_all("Retry-After") is None

    # The error location itself is internal: asking for it is a JSON 404.
    response = fetch(nginx_front, "GET", "/__error__")
    nginx_error(nginx_front, response, 404, "not_found")

    # A request line nginx cannot parse: over TLS the name came in the
    # handshake (SNI), and the site answers; on port 80 it is a request for
    # no name, closed (test_a_host_that_is_not_ours_is_closed_on_both_ports).
    with tls_context(nginx_front.cert).wrap_socket(
        socket.create_connection(("127.0.0.1", nginx_front.https_port), timeout=10),
        server_hostname=DOMAIN,
    ) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), raw
    assert b"\r\nserver:" not in head.lower(), raw
    assert b"application/json" in head, raw
    assert json.loads(body)["error"]["code"] == "bad_request", raw
    assert b"strict-transport-security:" in head.lower(), raw

    # The same error page on port 80, for a request that names this site: no HSTS there.
    outcome = exchange(nginx_front, b"TRACE / HTTP/1.1\r\nHost: example.com\r\n\r\n", tls=False)
    assert outcome.status == 405, outcome
    assert json.loads(outcome.body)["error"]["code"] == "method_not_allowed", outcome
    assert "strict-transport-security" not in dict(outcome.headers), outcome


def test_nginx_takes_exactly_the_bodies_the_app_takes(nginx_front):
    """client_max_body_size matches the app's MAX_CONTENT_LENGTH (131072 bytes)."""
    json_type = {"Content-Type": "application/json", **nginx_front.stack.bearer()}
    largest, too_large = item_body(MAX_CONTENT_LENGTH), item_body(MAX_CONTENT_LENGTH + 1)
    assert (len(largest), len(too_large)) == (MAX_CONTENT_LENGTH, MAX_CONTENT_LENGTH + 1)

    # The largest body the app reads gets through: the app itself judges it
    # (its body field is too long), and behind the dead copy nginx passed it on.
    response = fetch(nginx_front, "POST", "/api/v1/items", body=largest, headers=json_type)
    assert error_of(response, 422, "invalid")["field"] == "body"
    dead = nginx_front.dead_https_port
    response = fetch(
        nginx_front, "POST", "/api/v1/items", body=largest, headers=json_type, port=dead
    )
    nginx_error(nginx_front, response, 502, "bad_gateway")

    # One byte more: nginx refuses it itself (the dead copy proves it is nginx),
    # as JSON with the headers, as the app would have.
    for port in (nginx_front.https_port, dead):
        response = fetch(
            nginx_front, "POST", "/api/v1/items", body=too_large, headers=json_type, port=port
        )
        nginx_error(nginx_front, response, 413, "request_entity_too_large")


def test_only_tls_1_2_and_1_3_with_forward_secret_aead_ciphers(nginx_front):
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = tls_context(nginx_front.cert, version)
        context.set_alpn_protocols(["h2", "http/1.1"])
        with handshake(nginx_front, context) as sock:
            assert sock.version() == version.name.replace("_", "."), sock.version()
            assert sock.selected_alpn_protocol() == "h2"
            name = sock.cipher()[0]
            if version == ssl.TLSVersion.TLSv1_2:
                assert name.startswith("ECDHE-"), name
                assert "GCM" in name or "CHACHA20" in name, name

    # Session tickets are off: TLS 1.2 resumes from the server's cache only.
    # (TLS 1.3 always sends a ticket, which with tickets off names a cache entry.)
    with handshake(nginx_front, tls_context(nginx_front.cert, ssl.TLSVersion.TLSv1_2)) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: example.com\r\n\r\n")
        assert sock.recv(12) == b"HTTP/1.1 200"
        assert not sock.session.has_ticket

    # Debian's nginx.conf enables TLS 1.0 and 1.1; the site refuses them with an alert.
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises(ssl.SSLError) as refused:
            handshake(nginx_front, tls_context(nginx_front.cert, version)).close()
        assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", (version, refused.value)

    # TLS 1.2 with CBC suites, which this ECDSA certificate could otherwise use: refused.
    context = tls_context(nginx_front.cert, ssl.TLSVersion.TLSv1_2)
    context.set_ciphers(":".join(CBC_SUITES))
    with pytest.raises(ssl.SSLError) as refused:
        handshake(nginx_front, context).close()
    assert refused.value.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE", refused.value


def test_a_client_cannot_switch_hsts_off_through_nginx(nginx_front):
    spoofed = {"X-Forwarded-Proto": "http", "X-Forwarded-For": "192.0.2.7"}
    response = fetch(nginx_front, "GET", "/api/v1/health", headers=spoofed)
    assert response.status == 200
    assert response.headers.get_all("Strict-Transport-Security") == [HSTS]
    assert_anonymous(response)

    # The control: the same header from the proxy's own address would switch
    # it off, so it is nginx overwriting it that keeps HSTS on.
    stack = nginx_front.stack
    request = http.client.HTTPConnection("127.0.0.1", stack.public_port, timeout=10)
    try:
        request.request("GET", "/api/v1/health", headers=spoofed)
        direct = request.getresponse()
        direct.read()
        assert direct.status == 200
        assert direct.getheader("Strict-Transport-Security") is None
    finally:
        request.close()


WRITES = [
    ("POST", "/api/v1/items", b'{"title": "through nginx"}'),
    ("PUT", "/api/v1/items/{id}", b'{"title": "changed through nginx"}'),
    ("DELETE", "/api/v1/items/{id}", None),
]


def test_anonymous_writes_get_401_with_the_challenge_through_nginx(nginx_front):
    """POST, PUT and DELETE without a token: the app's 401 passes through nginx as
    JSON with the challenge and every security header; with the token each succeeds.
    A malformed request id from the client is replaced by nginx's own."""
    token = nginx_front.stack.bearer()
    json_type = {"Content-Type": "application/json"}
    created = fetch(
        nginx_front, "POST", "/api/v1/items", body=WRITES[0][2], headers={**json_type, **token}
    )
    assert created.status == 201, (created.status, created.body)
    item_id = json.loads(created.body)["id"]
    sent_id = "not a well-formed id"
    for method, path, body in WRITES:
        path = path.format(id=item_id)
        headers = {**json_type, "X-Request-ID": sent_id} if body else {"X-Request-ID": sent_id}
        response = fetch(nginx_front, method, path, body=body, headers=headers)
        error_of(response, 401, "unauthorized")
        assert response.headers.get_all("WWW-Authenticate") == [REALM], (method, response.headers)
        seen = security_headers(response.headers.items())
        assert seen.pop("www-authenticate") == [REALM]
        assert seen == nginx_front.app_headers, (method, seen, nginx_front.app_headers)
        assert response.headers.get_all("Strict-Transport-Security") == [HSTS]
        assert NGINX_REQUEST_ID.fullmatch(response.headers["X-Request-ID"]), response.headers
        assert_anonymous(response)
    for method, path, body in WRITES:
        headers = {**json_type, **token} if body else token
        response = fetch(nginx_front, method, path.format(id=item_id), body=body, headers=headers)
        assert response.status == {"POST": 201, "PUT": 200, "DELETE": 204}[method], response.body


def test_the_token_is_in_no_log_of_nginx(nginx_front):
    """nginx's logs (the site's JSON access log, its error log) never hold the bearer token."""
    token = nginx_front.stack.token
    response = fetch(
        nginx_front, "GET", "/api/v1/items?limit=1", headers=nginx_front.stack.bearer()
    )
    assert response.status == 200
    # A refused token is logged by no one either.
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    response = fetch(
        nginx_front, "GET", "/api/v1/items", headers={"Authorization": f"Bearer {wrong}"}
    )
    assert response.status == 401
    nginx_front.logs()  # flushes
    logs = [nginx_front.access_log] + [
        nginx_front.work / name for name in ("error.log", "nginx.out")
    ]
    assert nginx_front.access_log.stat().st_size > 0
    for path in logs:
        data = path.read_bytes()
        assert token.encode() not in data and wrong.encode() not in data, path


def test_a_flood_gets_json_429_and_the_limit_recovers(nginx_front):
    """limit_req: 10 r/s per client address, a burst of 20 answered at once, then 429."""
    # The earlier tests' API requests share this client's bucket: let them drain
    # (20 at 10 r/s take 2 s), so the burst below starts full.
    time.sleep(2.2)
    connection = http.client.HTTPConnection(DOMAIN, nginx_front.https_port, timeout=10)
    connection.sock = tls_context(nginx_front.cert).wrap_socket(
        socket.create_connection(("127.0.0.1", nginx_front.https_port), timeout=10),
        server_hostname=DOMAIN,
    )
    statuses, refused = [], None
    try:
        for _ in range(200):
            connection.request("GET", "/api/v1/health")
            response = connection.getresponse()
            body = response.read()
            statuses.append(response.status)
            if response.status == 429:
                refused = SimpleNamespace(status=429, headers=response.headers, body=body)
                break
    finally:
        connection.close()

    assert refused is not None, f"no 429 after {len(statuses)} requests"
    passed = statuses[:-1]
    assert set(passed) == {200}, statuses
    assert len(passed) >= 21, f"the burst of 20 was not honoured: {statuses}"
    nginx_error(nginx_front, refused, 429, "too_many_requests")
    assert refused.headers.get_all("Retry-After") == ["1"], refused.headers

    # The page and its files are outside the API's limit.
    assert fetch(nginx_front, "GET", "/static/app.js").status == 200

    # A rate, not a ban: the bucket drains and the API answers again.
    deadline = time.monotonic() + 5
    while (status := fetch(nginx_front, "GET", "/api/v1/health").status) != 200:
        assert status == 429, status
        assert time.monotonic() < deadline, "still refused 5 s after the flood"
        time.sleep(0.1)
