"""gunicorn settings of the public API: `gunicorn -c python:{{ cookiecutter.__package }}.gunicorn_api`.

Every value comes from config.py, so the environment variables documented in
README.md are the one place to change them.
"""

import gc

from gunicorn import util as _gunicorn_util
from gunicorn.http import wsgi as _gunicorn_wsgi

# Module-level names are read as gunicorn settings, and "config" is one: keep it private.
from . import config as _config
from . import gunicorn_errors as _errors
from . import logs as _logs
from . import metrics as _metrics
from . import startup as _startup
from .gunicorn_worker import Worker as _Worker
from .gunicorn_worker import body_deadline as _body_deadline

_config.load_dotenv()
_settings, _host = _startup.public_listener()
# The app's log lines (the access line among them) go to stderr in LOG_FORMAT;
# gunicorn's own keep their format.
_logs.configure(_settings)
# Before the app (and prometheus-client) is imported: the workers' samples' directory.
_metrics.prepare(_settings, "api")

wsgi_app = "{{ cookiecutter.__package }}.api:create_app()"
bind = [_config.join_host_port(_host, _settings["PUBLIC_PORT"])]
workers = _settings["WORKERS"]
# gthread (gunicorn_worker.py): connections stay open between requests, so
# nginx's upstream keepalive saves a TCP setup and teardown on every request.
worker_class = _Worker
_Worker.set_deadline(_settings["BODY_TIMEOUT"])
threads = _settings["THREADS"]
# Longer than nginx's upstream keepalive_timeout (60 s): nginx is the side that
# closes an idle connection, so it never sends a request on one gunicorn just closed.
keepalive = _settings["KEEPALIVE"]
# The app is built once, in the master, and the workers share its memory
# (see when_ready below): about 28 MB less PSS with two workers.
preload_app = True
proc_name = "{{ cookiecutter.project }}-api"
# Heartbeat files in RAM: no disk writes, and it works under ProtectSystem=strict.
# Safe though the directory is shared: gunicorn makes each file with mkstemp (a
# random name, mode 0600, O_EXCL, so no planted file or link is followed) and
# unlinks it at once, keeping only the open descriptor.
worker_tmp_dir = "/dev/shm"  # noqa: S108 - see above: mkstemp in a RAM directory
# No runtime control socket: nothing to guard in $HOME or elsewhere.
control_socket_disable = True
# Only the local proxy may tell us the client's scheme and address.
forwarded_allow_ips = ",".join(_config.PROXY_ADDRESSES)
# The scheme is decided in one place, api/proxy.py (ProxyFix with PROXY_HOPS):
# gunicorn's own reading of X-Forwarded-Proto/-Ssl/-Protocol is switched off.
secure_scheme_headers = {}
loglevel = _settings["LOG_LEVEL"].lower()
errorlog = "-"


def pre_request(worker, req):
    """Before the app reads the body: the client socket's read timeout. A client that
    stops sending (a body shorter than its Content-Length, a chunked body that
    stalls) gets a 408 after BODY_TIMEOUT seconds, instead of holding a thread."""
    # What gunicorn's own pre_request does, which this one replaces.
    worker.log.debug("%s %s", req.method, req.path)
    _body_deadline(req.unreader.sock, _settings["BODY_TIMEOUT"])


def when_ready(server):
    """Serve the metrics from the master, if on; then freeze what the master has
    built, so that the workers' garbage collector never writes to those pages and
    they stay shared after the fork."""
    if _settings["METRICS_PORT"]:
        _metrics.serve(_settings, _settings["METRICS_PORT"], ["api", "internal"])
    gc.collect()
    gc.freeze()


def _without_server_header(default_headers):
    def headers(response):
        return [line for line in default_headers(response) if not line.startswith("Server:")]

    return headers


def _checked_once(pairs):
    """The pairs that pass gunicorn's own checks of a response header (the same
    expressions, TOKEN_RE and HEADER_VALUE_RE) and that it stores as they are:
    not Content-Length and not hop-by-hop, which it treats specially."""
    return frozenset(
        (name, value)
        for name, value in pairs
        if _gunicorn_wsgi.TOKEN_RE.fullmatch(name)
        and _gunicorn_wsgi.HEADER_VALUE_RE.fullmatch(value)
        and value == value.strip(" \t")
        and name.lower() != "content-length"
        and not _gunicorn_util.is_hoppish(name)
    )


def _skipping_checked(process_headers, checked):
    def process(response, headers):
        process_headers(response, [pair for pair in headers if pair not in checked])
        response.headers.extend([pair for pair in headers if pair in checked])

    return process


# gunicorn's own answers to requests it cannot parse: JSON in our shape, with
# our headers when harden is on (HSTS too: over loopback http a browser ignores
# it, and behind nginx the client came over TLS).
_error_headers = []
if _settings["HARDEN"]:
    from .api import harden as _harden

    _error_headers = _harden.json_headers(https=True)
_gunicorn_util.write_error = _errors.json_error_writer(
    _gunicorn_util.write_nonblock, _error_headers
)

if _settings["HARDEN"]:
    # hidePoweredBy: gunicorn writes "Server: gunicorn" in Response.default_headers
    # and has no setting for it. This file is loaded by the master before it
    # forks, so wrapping that method here drops the line in every worker.
    # An empty "Server:" would still name a header; the line is removed instead.
    _gunicorn_wsgi.Response.default_headers = _without_server_header(
        _gunicorn_wsgi.Response.default_headers
    )
    # gunicorn runs two regular expressions over every header of every response;
    # for the fifteen-odd hardening headers that was most of what harden cost
    # (bench/run.py). They are constants, so they are checked here, once, and
    # appended as they are; every other header still goes through gunicorn's check.
    _gunicorn_wsgi.Response.process_headers = _skipping_checked(
        _gunicorn_wsgi.Response.process_headers, _checked_once(_harden.constant_headers())
    )
