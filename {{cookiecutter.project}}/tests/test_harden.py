"""The harden switch, checked on real gunicorn: every Helmet header, no Server
header, the run-time override both ways, and proxy trust that a direct client
cannot fake.

Requests that play nginx come from 127.0.0.1 with X-Forwarded-Proto: https,
as nginx sends them. A "direct client" comes from 127.0.0.2: still loopback,
but not one of config.PROXY_ADDRESSES.
"""

import http.client

import pytest
from flask import request, session

from {{ cookiecutter.__package }}.api import create_app

PROXY = "127.0.0.1"
DIRECT = "127.0.0.2"
VIA_TLS = {"X-Forwarded-Proto": "https"}

HSTS = "max-age=31536000; includeSubDomains"
JSON_CSP = "default-src 'none'; frame-ancestors 'none'"
HTML_CSP = {
    "default-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
}
# Helmet's protections and the current best-practice headers, by exact value.
FIXED = {
    "Strict-Transport-Security": HSTS,
    "X-Download-Options": "noopen",
    "Cache-Control": "no-store, max-age=0",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-XSS-Protection": "0",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Origin-Agent-Cluster": "?1",
    "X-DNS-Prefetch-Control": "off",
    "X-Permitted-Cross-Domain-Policies": "none",
}
ADDED = [*FIXED, "Content-Security-Policy", "Permissions-Policy"]
# (method, path, status, what the CSP must be)
RESPONSES = [
    ("GET", "/api/v1/health", 200, "json"),
    ("GET", "/api/v1/no-such-thing", 404, "json"),
    ("DELETE", "/api/v1/health", 405, "json"),
    ("GET", "/", 200, "html"),
    ("GET", "/static/app.js", 200, "html"),
]


def fetch(port, method, path, headers=None, source=PROXY):
    """One request to gunicorn from the given loopback source address."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=(source, 0)
    )
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response
    finally:
        connection.close()


@pytest.mark.parametrize(("method", "path", "status", "kind"), RESPONSES)
def test_hardened_gunicorn_sends_every_helmet_header_and_no_server(
    start_api, method, path, status, kind
):
    port = start_api("true")
    response = fetch(port, method, path, VIA_TLS)
    assert response.status == status
    names = {name.lower() for name, _ in response.getheaders()}
    assert "server" not in names and "x-powered-by" not in names
    for name, value in FIXED.items():
        assert response.headers.get_all(name) == [value], name
    policy = response.headers["Content-Security-Policy"]
    if kind == "json":
        assert policy == JSON_CSP
    else:
        assert {part.strip() for part in policy.split(";")} == HTML_CSP
    features = response.headers["Permissions-Policy"].split(", ")
    permissions = dict(feature.split("=") for feature in features)
    assert permissions["camera"] == permissions["geolocation"] == "()"
    assert set(permissions.values()) == {"()"}


@pytest.mark.parametrize("harden", ["true", "false"])
def test_harden_setting_switches_every_header_at_run_time(start_api, harden):
    """Both directions, whatever the baked default: the variable decides."""
    port = start_api(harden)
    for method, path, status, _ in RESPONSES:
        response = fetch(port, method, path, VIA_TLS)
        assert response.status == status
        present = [name for name in ADDED if name in response.headers]
        if harden == "true":
            assert present == ADDED, path
            assert "Server" not in response.headers
        elif path.startswith("/static/"):
            # Flask's own revalidation header for files, not the no-store of harden.
            assert present == ["Cache-Control"] and response.headers["Cache-Control"] == "no-cache"
        else:
            assert present == [], path
            # Stock gunicorn: proves the test would see a Server header that was there.
            assert response.headers.get_all("Server") == ["gunicorn"]


def test_only_the_local_proxy_can_say_the_request_came_over_https(start_api):
    port = start_api("true")
    assert fetch(port, "GET", "/api/v1/health", VIA_TLS).headers["Strict-Transport-Security"]
    for headers, source in [
        # A client reaching gunicorn directly: its header is ignored.
        (VIA_TLS, DIRECT),
        ({"X-Forwarded-Proto": "https, https"}, DIRECT),
        # Plain HTTP from the proxy: no HSTS.
        ({}, PROXY),
        # One hop: only the value nginx appended counts, not one the client put first.
        ({"X-Forwarded-Proto": "https, http"}, PROXY),
    ]:
        response = fetch(port, "GET", "/api/v1/health", headers, source)
        assert response.status == 200
        assert "Strict-Transport-Security" not in response.headers, (headers, source)
    response = fetch(port, "GET", "/api/v1/health", {"X-Forwarded-Proto": "http, https"})
    assert response.headers["Strict-Transport-Security"] == HSTS


def test_no_forwarded_header_turns_on_a_redirect(start_api):
    """The https redirect belongs to nginx on port 80; the app answers whatever the header says."""
    port = start_api("true")
    for proto in ("http", "https", "ftp"):
        for source in (PROXY, DIRECT):
            response = fetch(port, "GET", "/api/v1/health", {"X-Forwarded-Proto": proto}, source)
            assert response.status == 200 and "Location" not in response.headers


def test_proxy_hops_zero_ignores_forwarded_headers_even_from_the_proxy(start_api):
    port = start_api("true", PROXY_HOPS=0)
    assert "Strict-Transport-Security" not in fetch(port, "GET", "/api/v1/health", VIA_TLS).headers


@pytest.fixture
def peer_app(internal_service):
    """The app with one extra view that shows what it believes about the client."""
    app = create_app({"INTERNAL_ADDRESS": internal_service.address, "PROXY_HOPS": 1})

    @app.get("/peer")
    def peer():
        return {"addr": request.remote_addr, "scheme": request.scheme}

    yield app
    app.extensions["internal_client"].close()


@pytest.mark.parametrize(
    ("remote", "forwarded_for", "expected"),
    [
        # Through nginx: the address nginx appended, not the one the client made up.
        ("127.0.0.1", "203.0.113.66, 198.51.100.7", "198.51.100.7"),
        ("::1", "198.51.100.7", "198.51.100.7"),
        # Directly: the header is ignored and the TCP peer is the client.
        ("192.0.2.9", "198.51.100.7", "192.0.2.9"),
        ("127.0.0.2", "198.51.100.7", "127.0.0.2"),
    ],
)
def test_client_address_comes_from_the_last_trusted_hop(peer_app, remote, forwarded_for, expected):
    response = peer_app.test_client().get(
        "/peer",
        headers={"X-Forwarded-For": forwarded_for, "X-Forwarded-Proto": "https"},
        environ_base={"REMOTE_ADDR": remote},
    )
    trusted = remote in ("127.0.0.1", "::1")
    assert response.get_json() == {"addr": expected, "scheme": "https" if trusted else "http"}


@pytest.mark.parametrize("harden", [True, False])
def test_harden_switch_leaves_the_answers_themselves_alone(internal_service, harden):
    app = create_app({"INTERNAL_ADDRESS": internal_service.address, "HARDEN": harden})
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {internal_service.token()}"
    created = client.post("/api/v1/items", json={"title": "same either way"})
    assert created.status_code == 201
    assert client.get(created.headers["Location"]).get_json()["title"] == "same either way"
    assert client.get("/api/v1/health").get_json() == {"status": "ok"}
    app.extensions["internal_client"].close()


def test_a_session_cookie_would_be_secure_httponly_and_samesite(internal_service):
    """The API sets no cookie; one added later gets the flags without more work."""
    app = create_app({"INTERNAL_ADDRESS": internal_service.address, "HARDEN": True})
    app.secret_key = "a test key, never a real one"  # noqa: S105

    @app.get("/login")
    def login():
        session["user"] = "someone"
        return {"ok": True}

    cookie = app.test_client().get("/login", base_url="https://localhost").headers["Set-Cookie"]
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"secure", "httponly", "samesite=strict"} <= flags
    app.extensions["internal_client"].close()
