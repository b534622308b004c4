"""Debian's real nginx with test copies of the generated site file, and a client for it.

A test copy of deploy/nginx/PROJECT.conf from the default project differs only
in what a test has to change: its listen addresses (free ports on loopback),
a self-signed certificate made here, the gunicorn port of the running stack,
and its http-level names (made unique). Everything else is as generated,
inside a minimal nginx.conf that keeps the Debian nginx.conf defaults the
site file has to override (TLS 1.0 and 1.1 on, gzip on).

A second copy of the same file, on other ports, proxies to a port where
nothing listens ("dead"): that is how nginx's own 502 is made.
"""

import contextlib
import http.client
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

from support.baking import default_answers
from support.files import shared_tmp_dir
from support.processes import clean_env, free_port, run, stop_process, wait_for_port
from support.tools import system_file, tool

ANSWERS = default_answers()
PROJECT = ANSWERS["project"]
PACKAGE = ANSWERS["__package"]
DOMAIN = ANSWERS["domain"]
PUBLIC_PORT = ANSWERS["public_port"]
HEADERS_MORE = Path("/usr/lib/nginx/modules/ngx_http_headers_more_filter_module.so")
# Headers of an answer that say nothing about security, and one that differs per request.
TRANSPORT = {"content-type", "content-length", "date", "connection", "keep-alive"}
PER_REQUEST = {"x-request-id"}

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


def substitute(text, old, new, count):
    """Replace old, which must occur exactly count times: a changed site file is noticed."""
    found = text.count(old)
    assert found == count, f"the site file has {found} of {old!r}, the test expects {count}"
    return text.replace(old, new)


def site_copy(site, *, http_port, https_port, upstream_port, cert, key, tag, ipv6):
    """The generated site file with only what a test must change."""
    text = site
    # The site's servers, then the default server that takes every other name.
    for options in ("", " default_server"):
        http = f"listen 127.0.0.1:{http_port}{options};"
        https = f"listen 127.0.0.1:{https_port} ssl http2{options};"
        text = substitute(text, f"listen 80{options};", http, 1)
        text = substitute(text, f"listen 443 ssl http2{options};", https, 1)
        v6_http = f"listen [::1]:{http_port}{options};" if ipv6 else ""
        v6_https = f"listen [::1]:{https_port} ssl http2{options};" if ipv6 else ""
        text = substitute(text, f"listen [::]:80{options};", v6_http, 1)
        text = substitute(text, f"listen [::]:443 ssl http2{options};", v6_https, 1)
    live = f"/etc/letsencrypt/live/{DOMAIN}"
    text = substitute(text, f"{live}/fullchain.pem;", f"{cert};", 1)
    text = substitute(text, f"{live}/privkey.pem;", f"{key};", 1)
    upstream = f"server 127.0.0.1:{upstream_port};"
    text = substitute(text, f"server 127.0.0.1:{PUBLIC_PORT};", upstream, 1)
    # Each copy's access log in the work directory, named by its tag.
    log = f"/var/log/nginx/{PROJECT}.access.log"
    text = substitute(text, log, f"{Path(cert).parent}/access-{tag}.log", 3)
    # The error pages' headers, as deploy/install.sh writes them into /etc/nginx/snippets/.
    for scheme in ("https", "http"):
        snippet = f"include snippets/{PROJECT}-headers-{scheme}.conf;"
        text = substitute(text, snippet, f"include {Path(cert).parent}/headers-{scheme}.conf;", 1)
    # The rate limit zone, TLS session cache and map variables live at http level.
    for name in (
        "_api",
        "_tls",
        "_gunicorn",
        "_error_body",
        "_retry_after",
        "_request_id",
        "_access",
    ):
        assert f"{PACKAGE}{name}" in text, f"{PACKAGE}{name} is no longer in the site file"
    return text.replace(f"{PACKAGE}_", f"{PACKAGE}_{tag}_")


def write_header_snippets(work, project_dir):
    """The two snippets, printed by the project's own code as install.sh has it do."""
    env = {**clean_env(), "PYTHONPATH": str(Path(project_dir) / "src")}
    for scheme in ("https", "http"):
        module = f"{PACKAGE}.api.nginx_headers"
        printed = run([sys.executable, "-m", module, scheme], env=env, timeout=60).stdout
        (work / f"headers-{scheme}.conf").write_text(printed, encoding="utf-8")


def make_certificate(openssl, work):
    """A self-signed ECDSA certificate for DOMAIN and 127.0.0.1: (cert, key) paths."""
    cert, key = work / "cert.pem", work / "key.pem"
    run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "2",
         "-subj", f"/CN={DOMAIN}", "-addext", f"subjectAltName=DNS:{DOMAIN},IP:127.0.0.1"],
        timeout=60,
    )  # fmt: skip
    return cert, key


def configure(work, site, tag, openssl, stack):
    """The certificate, both site copies and nginx.conf, written in work.

    The front it returns holds the ports, the certificate and the stack.
    """
    cert, key = make_certificate(openssl, work)
    write_header_snippets(work, stack.project_dir)
    ipv6 = ipv6_loopback()
    ports = [free_port(also_v6=ipv6) for _ in range(5)]
    assert len(set(ports)) == 5, ports
    roles = ("http_port", "https_port", "dead_http_port", "dead_https_port", "dead_upstream_port")
    front = SimpleNamespace(
        **dict(zip(roles, ports, strict=True)), ipv6=ipv6, cert=str(cert), work=work, stack=stack
    )
    # The site's own JSON access log (the copy before the stack).
    front.access_log = work / f"access-{tag}.log"
    # file name -> its listen ports, the port it proxies to, and the tag of its names
    copies = {
        "site.conf": (front.http_port, front.https_port, stack.public_port, tag),
        "site-dead-upstream.conf": (
            front.dead_http_port, front.dead_https_port, front.dead_upstream_port, tag + "dead",
        ),
    }  # fmt: skip
    for name, (http_port, https_port, upstream_port, copy_tag) in copies.items():
        text = site_copy(
            site,
            http_port=http_port,
            https_port=https_port,
            upstream_port=upstream_port,
            cert=cert,
            key=key,
            tag=copy_tag,
            ipv6=ipv6,
        )
        (work / name).write_text(text, encoding="utf-8")
    (work / "temp").mkdir()
    conf = NGINX_CONF.format(headers_more=HEADERS_MORE, work=work)
    (work / "nginx.conf").write_text(conf, encoding="utf-8")
    return front


def front_logs(front, log):
    """What nginx printed, the end of its error log, and the stack's logs."""
    log.flush()
    text = [(front.work / "nginx.out").read_text("utf-8")]
    if (front.work / "error.log").exists():
        text.append((front.work / "error.log").read_text("utf-8")[-5000:])
    return "\n".join(text) + "\n" + front.stack.logs()


@contextlib.contextmanager
def running(nginx, front):
    """nginx -t (its output kept as front.check_output), then nginx until the block ends."""
    work = front.work
    command = [nginx, "-e", str(work / "error.log"), "-c", str(work / "nginx.conf")]
    checked = run([*command, "-t"], timeout=60, check=False)
    front.check_output = checked.stdout + checked.stderr
    assert checked.returncode == 0, front.check_output
    with open(work / "nginx.out", "w", encoding="utf-8") as log:
        front.logs = lambda: front_logs(front, log)
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            ports = (front.http_port, front.https_port, front.dead_http_port, front.dead_https_port)
            for address in ["127.0.0.1", "::1"] if front.ipv6 else ["127.0.0.1"]:
                for port in ports:
                    wait_for_port(
                        process, port, front.logs, address=address, name="nginx", timeout=15
                    )
            yield front
        finally:
            # SIGQUIT lets the master finish and reap its workers; if it will not,
            # its group is killed: the master leads a session of its own.
            stop_process(process, sig=signal.SIGQUIT, timeout=10, kill_group=True)


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


def security_headers(headers):
    """{name: [values]} of an answer's (name, value) pairs, names in lower case,
    less the headers of transport and the request id."""
    seen = {}
    for name, value in headers:
        if name.lower() not in TRANSPORT | PER_REQUEST:
            seen.setdefault(name.lower(), []).append(value)
    return seen


@contextlib.contextmanager
def resolving(name, address):
    """name resolves to address in this process, as DNS would have it: for a
    client that takes a URL (requests), so that it sends name in SNI."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        return real(address if host == name else host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = real


@contextlib.contextmanager
def front(stack, project_dir):
    """Debian's nginx with two test copies of the project's site file (one before
    the stack, one before nothing), running; the front, with app_headers: the
    headers of the app's own JSON error (a 404) through it."""
    nginx = tool("nginx", "nginx")
    system_file(HEADERS_MORE, "libnginx-mod-http-headers-more-filter")
    openssl = tool("openssl", "openssl")
    site = (Path(project_dir) / "deploy" / "nginx" / f"{PROJECT}.conf").read_text("utf-8")
    tag = secrets.token_hex(3)
    # In /tmp itself: the workers (www-data) must reach their temp dirs.
    with shared_tmp_dir(f"bastion-nginx-{tag}-", mode=0o711) as work:
        configured = configure(work, site, tag, openssl, stack)
        with running(nginx, configured):
            app_error = fetch(configured, "GET", "/api/v1/no-such-route")
            assert app_error.status == 404, (app_error.status, app_error.body)
            configured.app_headers = security_headers(app_error.headers.items())
            assert "strict-transport-security" in configured.app_headers
            yield configured
