"""The harden switch: the protections Helmet gives Express, plus current best practice.

flask-talisman sends what it covers: CSP, HSTS, frameguard, nosniff,
ieNoOpen, Referrer-Policy, Permissions-Policy and the session cookie flags. This module
adds the rest. HSTS is set by Talisman and nowhere else, not in nginx either:
two layers that both set it produce a merged header that scanners reject.
The `Server` header is removed in gunicorn_api.py, since gunicorn writes it
after the app has answered. README.md, "Security headers", lists each header
with its reason and the test that proves it.
"""

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


def _extra_headers(response):
    response.headers.update(EXTRA_HEADERS)
    response.headers.pop("X-Powered-By", None)
    # Flask's static files say how long to cache; no-store above overrides that.
    response.headers.pop("Expires", None)
    if response.mimetype == "application/json":
        response.headers["Content-Security-Policy"] = JSON_POLICY
    return response


def apply(app):
    """Turn the protections on for every response of app."""
    # Registered before Talisman so that it runs after it (Flask runs these in reverse).
    app.after_request(_extra_headers)
    Talisman(
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
