"""The generated nginx site file, run by Debian's real nginx in front of the real gunicorn.

A test copy of deploy/nginx/PROJECT.conf from the default project differs only
in what a test has to change: its listen addresses (free ports on loopback),
a self-signed certificate made here, the gunicorn port of the running stack,
and its http-level names (made unique). Everything else is tested as
generated, inside a minimal nginx.conf that keeps the Debian nginx.conf
defaults the site file has to override (TLS 1.0 and 1.1 on, gzip on).

A second copy of the same file, on other ports, proxies to a port where
nothing listens: that is how nginx's own 502 is made, and how a 413 is known
to come from nginx rather than from the app.

Needs root (nginx's workers run as www-data, like Debian's) and the packages
nginx and libnginx-mod-http-headers-more-filter; CI installs them.
"""

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import default_answers
from drheader import Drheader
from stack import free_port

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root: nginx's master binds the test ports and starts its workers "
    "as www-data; run the tests as root (CI does) to test the nginx front",
)

ANSWERS = default_answers()
PROJECT = ANSWERS["project"]
PACKAGE = ANSWERS["__package"]
DOMAIN = ANSWERS["domain"]
PUBLIC_PORT = ANSWERS["public_port"]
HEADERS_MORE = Path("/usr/lib/nginx/modules/ngx_http_headers_more_filter_module.so")
MAX_CONTENT_LENGTH = 131072  # the app's limit, and client_max_body_size 128k
HSTS = "max-age=31536000; includeSubDomains"
# TLS 1.2 suites an ECDSA certificate could use, but without AEAD.
CBC_SUITES = ("ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA")
NGINX_ERROR_HEADERS = {
    "Strict-Transport-Security": HSTS,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store, max-age=0",
}

NGINX_CONF = """\
load_module {headers_more};
# Debian's worker user: the workers may write only the temp dirs nginx makes for them.
user www-data;
worker_processes 1;
daemon off;
master_process on;
pid {work}/nginx.pid;
error_log {work}/error.log info;

events {{
    worker_connections 256;
}}

http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    # Debian 12's nginx.conf says these; the site file must override them.
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    gzip on;
    access_log {work}/access.log;
    client_body_temp_path {work}/temp/body;
    proxy_temp_path {work}/temp/proxy;
    fastcgi_temp_path {work}/temp/fastcgi;
    uwsgi_temp_path {work}/temp/uwsgi;
    scgi_temp_path {work}/temp/scgi;
    include {work}/site.conf;
    include {work}/site-dead-upstream.conf;
}}
"""


# ---------------------------------------------------------------- helpers


def require(name, path, package):
    """A missing tool fails in CI and skips elsewhere."""
    message = f"{name} not found (apt-get install -y {package})"
    if path is None or not Path(path).exists():
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must install it")
        pytest.skip(message)
    return str(path)


def ipv6_loopback():
    """Whether ::1 exists here: the site's [::] listens are kept only then."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def free_test_port(ipv6):
    """A loopback port free on 127.0.0.1, and on ::1 too when the v6 listens are kept."""
    for _ in range(50):
        port = free_port()
        if not ipv6:
            return port
        try:
            with socket.socket(socket.AF_INET6) as sock:
                sock.bind(("::1", port))
        except OSError:
            continue
        return port
    raise AssertionError("no port free on both 127.0.0.1 and ::1")


def substitute(text, old, new, count):
    """Replace old, which must occur exactly count times: a changed site file is noticed."""
    found = text.count(old)
    assert found == count, f"the site file has {found} of {old!r}, the test expects {count}"
    return text.replace(old, new)


def site_copy(site, *, http_port, https_port, upstream_port, cert, key, tag, ipv6):
    """The generated site file with only what a test must change."""
    text = substitute(site, "listen 80;", f"listen 127.0.0.1:{http_port};", 1)
    text = substitute(text, "listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;", 1)
    v6_http = f"listen [::1]:{http_port};" if ipv6 else ""
    v6_https = f"listen [::1]:{https_port} ssl http2;" if ipv6 else ""
    text = substitute(text, "listen [::]:80;", v6_http, 1)
    text = substitute(text, "listen [::]:443 ssl http2;", v6_https, 1)
    live = f"/etc/letsencrypt/live/{DOMAIN}"
    text = substitute(text, f"{live}/fullchain.pem;", f"{cert};", 1)
    text = substitute(text, f"{live}/privkey.pem;", f"{key};", 1)
    upstream = f"proxy_pass http://127.0.0.1:{upstream_port};"
    text = substitute(text, f"proxy_pass http://127.0.0.1:{PUBLIC_PORT};", upstream, 2)
    # The rate limit zone, TLS session cache and map variables live at http level.
    for name in ("_api", "_tls", "_error_body", "_retry_after"):
        assert f"{PACKAGE}{name}" in text, f"{PACKAGE}{name} is no longer in the site file"
    return text.replace(f"{PACKAGE}_", f"{PACKAGE}_{tag}_")


def wait_for_port(process, address, port, log, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"nginx exited early:\n{log()}")
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nginx not listening on {address}:{port} after {timeout}s:\n{log()}")


def stop(process):
    """SIGQUIT lets the master finish and reap its workers; kill the group if it will not."""
    if process.poll() is None:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            pass
        # The master leads a session of its own (start_new_session): its group is ours.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def tls_context(cert, version=None):
    """A client that trusts only the test certificate, optionally pinned to one TLS version."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cert)
    if version is not None:
        with warnings.catch_warnings():
            # Python deprecates TLS 1.0 and 1.1: offering them is the point here.
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = version
            context.maximum_version = version
        if version < ssl.TLSVersion.TLSv1_2:
            # OpenSSL's security level would refuse these on the client side; the
            # refusal under test must come from the server.
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def handshake(front, context):
    """TLS to 127.0.0.1 with SNI example.com; the open TLS socket."""
    sock = socket.create_connection(("127.0.0.1", front.https_port), timeout=10)
    try:
        return context.wrap_socket(sock, server_hostname=DOMAIN)
    except BaseException:
        sock.close()
        raise


def fetch(front, method, path, *, body=None, headers=None, tls=True, port=None, address=None):
    """One request, over TLS with SNI and Host example.com unless tls=False."""
    port = port or (front.https_port if tls else front.http_port)
    sock = socket.create_connection((address or "127.0.0.1", port), timeout=10)
    if tls:
        sock = tls_context(front.cert).wrap_socket(sock, server_hostname=DOMAIN)
    connection = http.client.HTTPConnection(DOMAIN, port, timeout=10)
    connection.sock = sock
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return SimpleNamespace(status=response.status, headers=response.headers, body=data)
    finally:
        connection.close()


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


def nginx_error(response, status, code):
    """An error nginx wrote itself: the app's shape, the app's headers, no name."""
    error = error_of(response, status, code)
    assert sorted(error) == ["code", "message"], error
    for name, value in NGINX_ERROR_HEADERS.items():
        assert response.headers.get_all(name) == [value], (name, response.headers)
    assert_anonymous(response)


def item_body(size):
    """A JSON item of exactly size bytes; the app refuses it (body too long), but reads it."""
    skeleton = json.dumps({"title": "limit", "body": ""}).encode()
    return json.dumps({"title": "limit", "body": "x" * (size - len(skeleton))}).encode()


# ---------------------------------------------------------------- nginx


@pytest.fixture(scope="module")
def nginx_front(hardened_stack, default_project):
    """nginx with two test copies of the site file: one before the stack, one before nothing."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    nginx = require("nginx", shutil.which("nginx", path=search), "nginx")
    require("the headers-more module", HEADERS_MORE, "libnginx-mod-http-headers-more-filter")
    openssl = require("openssl", shutil.which("openssl", path=search), "openssl")

    site = (Path(default_project) / "deploy" / "nginx" / f"{PROJECT}.conf").read_text("utf-8")
    tag = secrets.token_hex(3)
    # In /tmp itself: the workers (www-data) must reach their temp dirs, and
    # pytest's own tmp dirs are private to root.
    work = Path(tempfile.mkdtemp(prefix=f"bastion-nginx-{tag}-", dir="/tmp"))
    process = None
    log = None
    try:
        work.chmod(0o711)
        cert, key = work / "cert.pem", work / "key.pem"
        made = subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
             "-subj", f"/CN={DOMAIN}", "-addext", f"subjectAltName=DNS:{DOMAIN},IP:127.0.0.1"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr

        ipv6 = ipv6_loopback()
        ports = [free_test_port(ipv6) for _ in range(5)]
        assert len(set(ports)) == 5, ports
        front = SimpleNamespace(
            http_port=ports[0],
            https_port=ports[1],
            dead_http_port=ports[2],
            dead_https_port=ports[3],
            dead_upstream_port=ports[4],
            ipv6=ipv6,
            cert=str(cert),
            work=work,
            stack=hardened_stack,
        )
        (work / "site.conf").write_text(
            site_copy(site, http_port=front.http_port, https_port=front.https_port,
                      upstream_port=hardened_stack.public_port, cert=cert, key=key,
                      tag=tag, ipv6=ipv6),
            encoding="utf-8",
        )  # fmt: skip
        (work / "site-dead-upstream.conf").write_text(
            site_copy(site, http_port=front.dead_http_port, https_port=front.dead_https_port,
                      upstream_port=front.dead_upstream_port, cert=cert, key=key,
                      tag=tag + "dead", ipv6=ipv6),
            encoding="utf-8",
        )  # fmt: skip
        (work / "temp").mkdir()
        conf = work / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(headers_more=HEADERS_MORE, work=work), encoding="utf-8"
        )
        command = [nginx, "-e", str(work / "error.log"), "-c", str(conf)]

        checked = subprocess.run(
            [*command, "-t"], capture_output=True, text=True, timeout=60, check=False
        )
        front.check_output = checked.stdout + checked.stderr
        assert checked.returncode == 0, front.check_output

        log = open(work / "nginx.out", "w", encoding="utf-8")  # noqa: SIM115 - closed in finally

        def logs():
            log.flush()
            text = [(work / "nginx.out").read_text("utf-8")]
            if (work / "error.log").exists():
                text.append((work / "error.log").read_text("utf-8")[-5000:])
            return "\n".join(text) + "\n" + hardened_stack.logs()

        front.logs = logs
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        addresses = ["127.0.0.1", "::1"] if ipv6 else ["127.0.0.1"]
        for address in addresses:
            for port in ports[:4]:
                wait_for_port(process, address, port, logs)
        yield front
    finally:
        if process is not None:
            stop(process)
        if log is not None:
            log.close()
        shutil.rmtree(work, ignore_errors=True)


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
            response = fetch(
                nginx_front, method, "/api/v1/health?x=1", tls=False, address=address
            )
            assert response.status == 301, (address, method, response.status)
            assert response.headers["Location"] == f"https://{DOMAIN}/api/v1/health?x=1"
            # No nginx page either: the redirect's body is empty.
            assert response.body == b""
            assert_anonymous(response)
            # HSTS over plain http means nothing; neither layer sends it there.
            assert response.headers.get_all("Strict-Transport-Security") is None


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


# name: (method, path, request kwargs, expected status, which copy answers)
AUDIT_CASES = {
    "json-200": ("get", "/api/v1/health", {}, 200, "live"),
    "json-404": ("get", "/api/v1/items/987654321", {}, 404, "live"),
    "html-page": ("get", "/", {}, 200, "live"),
    "static-js": ("get", "/static/app.js", {}, 200, "live"),
    # nginx's own answers, where the app is not there to send the headers.
    "nginx-413": ("post", "/api/v1/items", {"data": b"x" * (MAX_CONTENT_LENGTH + 1)}, 413, "live"),
    "nginx-502": ("get", "/api/v1/health", {}, 502, "dead"),
}


def audit(front, case):
    """drheader's findings for one case, after checking what came back.

    requests connects to https://127.0.0.1 (no SNI for an address; the
    certificate's IP SAN verifies it) and sends Host example.com.
    """
    method, path, options, status, copy = AUDIT_CASES[case]
    port = front.https_port if copy == "live" else front.dead_https_port
    headers = {"Host": DOMAIN}
    if "data" in options:
        headers["Content-Type"] = "application/json"
    seen = []

    def record(response, **_):
        raw = response.raw.headers
        seen.append(
            (response.status_code, raw.getlist("Strict-Transport-Security"), raw.getlist("Server"))
        )

    scanner = Drheader(
        url=f"https://127.0.0.1:{port}{path}",
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
    nginx_error(response, 502, "bad_gateway")
    assert response.headers.get_all("Retry-After") is None

    # The error location itself is internal: asking for it is a JSON 404.
    response = fetch(nginx_front, "GET", "/__error__")
    nginx_error(response, 404, "not_found")

    # A request line nginx cannot parse, over TLS and over plain http.
    for tls in (True, False):
        port = nginx_front.https_port if tls else nginx_front.http_port
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls:
            sock = tls_context(nginx_front.cert).wrap_socket(sock, server_hostname=DOMAIN)
        with sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), raw
        assert b"\r\nserver:" not in head.lower(), raw
        assert b"application/json" in head, raw
        assert json.loads(body)["error"]["code"] == "bad_request", raw
        assert (b"strict-transport-security:" in head.lower()) == tls, raw


def test_nginx_takes_exactly_the_bodies_the_app_takes(nginx_front):
    """client_max_body_size matches the app's MAX_CONTENT_LENGTH (131072 bytes)."""
    json_type = {"Content-Type": "application/json"}
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
    nginx_error(response, 502, "bad_gateway")

    # One byte more: nginx refuses it itself (the dead copy proves it is nginx),
    # as JSON with the headers, as the app would have.
    for port in (nginx_front.https_port, dead):
        response = fetch(
            nginx_front, "POST", "/api/v1/items", body=too_large, headers=json_type, port=port
        )
        nginx_error(response, 413, "request_entity_too_large")


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
    nginx_error(refused, 429, "too_many_requests")
    assert refused.headers.get_all("Retry-After") == ["1"], refused.headers

    # The page and its files are outside the API's limit.
    assert fetch(nginx_front, "GET", "/static/app.js").status == 200

    # A rate, not a ban: the bucket drains and the API answers again.
    deadline = time.monotonic() + 5
    while (status := fetch(nginx_front, "GET", "/api/v1/health").status) != 200:
        assert status == 429, status
        assert time.monotonic() < deadline, "still refused 5 s after the flood"
        time.sleep(0.1)
