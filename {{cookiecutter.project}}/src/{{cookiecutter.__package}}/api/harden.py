"""The harden switch: the protections Helmet gives Express, plus current best practice.

flask-talisman sends what it covers (CSP, HSTS, frameguard, nosniff,
Referrer-Policy, Permissions-Policy, secure session cookies); the rest of the
headers are added here. HSTS is set here and nowhere else (not in nginx): two
layers setting it produce a merged header that scanners reject.
"""

from flask import request
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

PERMISSIONS_POLICY = {
    feature: "()"
    for feature in (
        "accelerometer",
        "camera",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "payment",
        "usb",
        "interest-cohort",
    )
}

EXTRA_HEADERS = {
    # ieNoOpen: old IE must not open downloads in the site's context.
    "X-Download-Options": "noopen",
    # xssFilter: the legacy XSS auditor could itself be abused to leak data; 0 turns it off,
    # as current Helmet does. CSP is the real protection.
    "X-XSS-Protection": "0",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Origin-Agent-Cluster": "?1",
    "X-DNS-Prefetch-Control": "off",
    "X-Permitted-Cross-Domain-Policies": "none",
}


def _extra_headers(response):
    response.headers.update(EXTRA_HEADERS)
    response.headers.pop("X-Powered-By", None)
    if response.mimetype == "application/json":
        response.headers["Content-Security-Policy"] = JSON_POLICY
    if request.endpoint != "static":
        # noCache: API answers hold data that must not linger in shared or browser caches.
        # Static assets keep Flask's default caching.
        response.headers["Cache-Control"] = "no-store, max-age=0"
        response.headers["Pragma"] = "no-cache"
    return response


def apply(app):
    """Turn the protections on for every response of app."""
    # Registered before Talisman so that it runs after it (Flask runs these in reverse).
    app.after_request(_extra_headers)
    Talisman(
        app,
        # nginx answers plain HTTP with a redirect; the app never sees port 80.
        force_https=False,
        frame_options=DENY,
        strict_transport_security=True,
        strict_transport_security_max_age=31536000,
        strict_transport_security_include_subdomains=True,
        content_security_policy=HTML_POLICY,
        referrer_policy="no-referrer",
        permissions_policy=PERMISSIONS_POLICY,
        session_cookie_secure=True,
        session_cookie_http_only=True,
        x_content_type_options=True,
        x_xss_protection=False,
    )
