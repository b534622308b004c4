"""The harden switch: the protections Helmet gives Express, plus current best practice.

flask-talisman decides what it covers: CSP, HSTS, frameguard, nosniff,
ieNoOpen, Referrer-Policy, Permissions-Policy and the session cookie flags.
This module adds the rest. HSTS comes from Talisman and nowhere else, not
from nginx either: two layers that both set it produce a merged header that
scanners reject. The `Server` header is removed in gunicorn_api.py, since
gunicorn writes it after the app has answered. README.md, "Security headers",
lists each header with its reason and the test that proves it.

Talisman works out its headers anew for every response, which costs more
than the rest of a small JSON answer. Here it runs once, at start-up, on a
model app with the same options; the headers it sends there, for an HTML and
a JSON answer over http and https, are then added to every response by one
pass over the header list at the WSGI layer, which also covers answers that
never reach Flask's after_request. Under gunicorn, gunicorn_api.py checks
these constant headers once instead of on every response.
"""

import functools

from flask import Flask
from flask_talisman import DENY, Talisman

# HTML routes may load only their own script and style; nothing may frame them.
HTML_POLICY = {
    "default-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
# JSON is data: it may load nothing at all.
JSON_POLICY = "default-src 'none'; frame-ancestors 'none'"

# Powerful browser features the page never uses, switched off for it and any frame.
PERMISSIONS_POLICY = {
    feature: "()"
    for feature in (
        "accelerometer",
        "autoplay",
        "camera",
        "display-capture",
        "encrypted-media",
        "fullscreen",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "picture-in-picture",
        "publickey-credentials-get",
        "screen-wake-lock",
        "serial",
        "usb",
        "xr-spatial-tracking",
    )
}

EXTRA_HEADERS = {
    # xssFilter: the legacy XSS auditor could be abused to leak data from a page;
    # 0 turns it off, as current Helmet does. The CSP is the real protection.
    "X-XSS-Protection": "0",
    # Another site's window gets no handle on ours, and no other origin may load our responses.
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # The page loads only same-origin resources, so requiring CORP costs nothing.
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Origin-Agent-Cluster": "?1",
    "X-DNS-Prefetch-Control": "off",
    "X-Permitted-Cross-Domain-Policies": "none",
    # noCache, static files included: they are a few hundred bytes, and an
    # app.js cached past an upgrade costs more than fetching it again.
    "Cache-Control": "no-store, max-age=0",
    "Pragma": "no-cache",
}


# Headers the app or Flask may have set that hardening replaces or removes.
_REPLACED = {"cache-control", "pragma", "expires", "x-powered-by", "content-security-policy"}

_SESSION_COOKIE_FLAGS = (
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE",
)


def _talisman(app):
    return Talisman(
        app,
        # nginx redirects port 80 to https; the redirect is decided there, from
        # the socket, and never from a header a client could send.
        force_https=False,
        frame_options=DENY,
        # ieNoOpen (X-Download-Options: noopen): old IE must not open downloads in the site.
        force_file_save=True,
        strict_transport_security=True,
        strict_transport_security_max_age=31536000,
        strict_transport_security_include_subdomains=True,
        content_security_policy=HTML_POLICY,
        referrer_policy="no-referrer",
        permissions_policy=PERMISSIONS_POLICY,
        session_cookie_secure=True,
        session_cookie_http_only=True,
        session_cookie_samesite="Strict",
        x_content_type_options=True,
        x_xss_protection=False,
    )


@functools.cache
def _model_headers():
    """What Talisman sends, plus EXTRA_HEADERS: (is_json, is_https) -> header list."""
    model = Flask(__name__)
    model.add_url_rule("/", "page", lambda: "<!doctype html><title>model</title>")
    _talisman(model)
    client = model.test_client()
    variants = {}
    for scheme in ("http", "https"):
        response = client.get("/", base_url=f"{scheme}://localhost")
        talisman_headers = [
            (name, value)
            for name, value in response.headers.items()
            if name.lower() not in ("content-type", "content-length")
        ]
        for is_json in (False, True):
            headers = dict(talisman_headers)
            headers.update(EXTRA_HEADERS)
            if is_json:
                headers["Content-Security-Policy"] = JSON_POLICY
            variants[(is_json, scheme == "https")] = list(headers.items())
    flags = {key: model.config[key] for key in _SESSION_COOKIE_FLAGS}
    return variants, flags


def _with_headers(wsgi_app, variants):
    names = {name.lower() for headers in variants.values() for name, _ in headers}
    names |= _REPLACED

    def app(environ, start_response):
        https = environ.get("wsgi.url_scheme") == "https"

        def start(status, headers, exc_info=None):
            is_json = False
            kept = []
            for name, value in headers:
                lower = name.lower()
                if lower == "content-type":
                    is_json = value.startswith("application/json")
                if lower not in names:
                    kept.append((name, value))
            kept += variants[(is_json, https)]
            return start_response(status, kept, exc_info)

        return wsgi_app(environ, start)

    return app


def json_headers(https):
    """(name, value) of every header hardening adds to a JSON answer over https or http."""
    variants, _ = _model_headers()
    return list(variants[(True, https)])


def constant_headers():
    """Every (name, value) pair this module adds: the same strings on every response,
    so gunicorn_api.py can have them checked once instead of on each response."""
    variants, _ = _model_headers()
    return frozenset(pair for headers in variants.values() for pair in headers)


def apply(app):
    """Turn the protections on for every response of app."""
    variants, flags = _model_headers()
    # Session cookies (none today) get Talisman's Secure, HttpOnly and SameSite flags.
    app.config.update(flags)
    app.wsgi_app = _with_headers(app.wsgi_app, variants)
