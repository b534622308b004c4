"""Authentication on the public API: RFC 6750 bearer tokens, judged by the internal service.

flask-httpauth's HTTPTokenAuth reads the Authorization header and writes the
challenge. This side checks only the token's form: a mistyped or made-up
token (wrong pattern or checksum) is refused at once, without a call to the
internal service. Whether a well-formed token is known, unexpired, unrevoked
and holds the operation's scope is decided there, in the same round trip as
the operation (internal/access.py); its refusals become the same challenges
here: 401, 403 with the scope needed, or 429 with Retry-After.

No message says whether a token exists: unknown, expired, revoked and
malformed tokens all get "the token is not valid".
"""

from flask import current_app, g, request
from flask_httpauth import HTTPTokenAuth

from .. import contract
from . import errors

auth = HTTPTokenAuth(scheme="Bearer", realm="{{ cookiecutter.project }}")
INVALID = "the token is not valid"


class MalformedToken(Exception):
    """A token was sent that cannot be one of ours."""


@auth.verify_token
def _verify(token):
    if not token:
        return None
    if not contract.well_formed(token):
        raise MalformedToken()
    return token


def challenge(status, code, message, **params):
    """Our JSON error with the WWW-Authenticate challenge; PARAMS are RFC 6750's error, scope."""
    response = errors.error_response(status, code, message)
    extra = "".join(f', {name}="{value}"' for name, value in params.items())
    response.headers["WWW-Authenticate"] = auth.authenticate_header() + extra
    return response


@auth.error_handler
def _anonymous(status):
    return challenge(401, "unauthorized", "this operation needs a bearer token")


def _through():
    return None


# login_required's two forms, built once: a token required, or optional.
_REQUIRED = auth.login_required(_through)
_OPTIONAL = auth.login_required(optional=True)(_through)


def require():
    """Before every route of a resource: a well-formed bearer token, unless this
    is a read and ANONYMOUS_READS is on. The rest is the internal service's call."""
    if request.method in ("GET", "HEAD") and current_app.config["ANONYMOUS_READS"]:
        return _OPTIONAL()
    return _REQUIRED()


def caller():
    """Who is calling, as the internal service is told: the token (if any),
    the client's address (as ProxyFix found it) and the request id."""
    found = {"address": request.remote_addr or "", "request": g.get("request_id", "")}
    token = auth.current_user()
    if token:
        found["token"] = token
    if g.get("idempotency_key"):
        found["key"] = g.idempotency_key
    return found


@errors.refusal("unauthorized")
def _unauthorized(exc):
    return challenge(401, "unauthorized", exc.message)


@errors.refusal("invalid_token")
def _invalid(exc):
    return challenge(401, "invalid_token", INVALID, error="invalid_token")


@errors.refusal("insufficient_scope")
def _scope(exc):
    scope = str(exc.details.get("scope", ""))
    message = exc.message
    return challenge(403, "insufficient_scope", message, error="insufficient_scope", scope=scope)


@errors.refusal("rate_limited")
def _rate_limited(exc):
    response = errors.error_response(429, "too_many_requests", exc.message)
    response.headers["Retry-After"] = str(int(exc.details.get("retry_after", 60)))
    return response


def register(app):
    app.register_error_handler(
        MalformedToken, lambda exc: challenge(401, "invalid_token", INVALID, error="invalid_token")
    )
