"""Proxy trust: which X-Forwarded-* headers the app believes, and from whom.

nginx terminates TLS and tells the app the scheme and client address in
X-Forwarded-Proto and X-Forwarded-For. Those headers are believed only when
the TCP peer is the local proxy (config.PROXY_ADDRESSES), and then only the
last PROXY_HOPS entries, so a client cannot prepend a value of its own.
Anyone else who reaches gunicorn directly has them ignored.

After this layer has decided, the raw headers are removed from the request:
flask-talisman reads X-Forwarded-Proto itself when it decides on HSTS, and
must not see a value that was not believed.
"""

from werkzeug.middleware.proxy_fix import ProxyFix

from .. import config

# Set in the WSGI environ when the TCP peer is the trusted proxy (request_id.py reads it).
TRUSTED_PEER = "{{ cookiecutter.__package }}.trusted_peer"

FORWARDED = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_PREFIX",
)


def _without_forwarded(wsgi_app):
    def app(environ, start_response):
        for key in FORWARDED:
            environ.pop(key, None)
        return wsgi_app(environ, start_response)

    return app


def trust_proxy(wsgi_app, hops):
    """Wrap wsgi_app so that scheme and client address come only from the trusted proxy."""
    untrusted = _without_forwarded(wsgi_app)
    if hops == 0:
        return untrusted
    # nginx sets Host itself, so only the scheme and the client address are taken.
    trusted = ProxyFix(untrusted, x_for=hops, x_proto=hops, x_host=0, x_port=0, x_prefix=0)

    def app(environ, start_response):
        if environ.get("REMOTE_ADDR") in config.PROXY_ADDRESSES:
            environ[TRUSTED_PEER] = True
            return trusted(environ, start_response)
        return untrusted(environ, start_response)

    return app
