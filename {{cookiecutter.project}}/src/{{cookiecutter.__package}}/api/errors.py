"""Every error leaves the API as JSON: {"error": {"code": ..., "message": ...}}.

No HTML error pages and no tracebacks, whatever the status.
"""

import logging

from flask import current_app, jsonify
from pydantic import BaseModel, ConfigDict
from werkzeug.exceptions import HTTPException

from ..internal_client import InternalError, OperationFailed

log = logging.getLogger(__name__)

# Errors the internal service reports about the request itself.
OPERATION_STATUS = {
    "not_found": 404,
    "invalid": 422,
    "invalid_arguments": 422,
    "idempotency_mismatch": 422,
}
# Refusals with answers of their own (auth.py): code -> function(OperationFailed) -> response.
REFUSALS = {}


def _busy(exc):
    """The store was held by another process for too long: try again in a moment."""
    response = error_response(503, "busy", "the service is busy; retry shortly")
    response.headers["Retry-After"] = str(int(exc.details.get("retry_after", 1)))
    return response


def refusal(code):
    """Register the decorated function as the answer to the internal service's refusal CODE."""

    def register(func):
        REFUSALS[code] = func
        return func

    return register


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    message: str
    field: str | None = None


class Error(BaseModel):
    """The shape of every error the API sends, as the OpenAPI document declares it."""

    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail


def error_response(status, code, message, field=None):
    error = {"code": code, "message": message}
    if field:
        error["field"] = field
    response = jsonify(error=error)
    response.status_code = status
    return response


def validation_error(exc):
    """flask-openapi3 calls this with pydantic's ValidationError: name the first bad field."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "body"
    return error_response(422, "invalid", f"{field}: {first['msg']}", field)


# Our own words for the errors werkzeug raises; its descriptions are long
# sentences written for people at a browser ("If you entered the URL manually...").
MESSAGES = {
    400: "the request could not be read",
    404: "no such resource",
    405: "this method is not allowed here",
    408: "the request took too long to arrive",
    413: "the request body is larger than {MAX_CONTENT_LENGTH} bytes",
    415: "the body is not of a type this route takes",
    429: "too many requests: slow down and retry",
}


def _http_error(exc):
    code = exc.name.lower().replace(" ", "_").replace("'", "")
    message = MESSAGES.get(exc.code, exc.name.lower()).format_map(current_app.config)
    response = error_response(exc.code, code, message)
    # Keep headers such as Allow (405) and Retry-After (429).
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


REFUSALS["busy"] = _busy


def _internal_error(exc):
    if isinstance(exc, OperationFailed) and exc.code in REFUSALS:
        return REFUSALS[exc.code](exc)
    if isinstance(exc, OperationFailed):
        status = OPERATION_STATUS.get(exc.code, 502)
        if status == 502:
            log.error("internal service error %s: %s", exc.code, exc.message)
            return error_response(502, "bad_gateway", "the internal service failed")
        return error_response(status, exc.code, exc.message, exc.field)
    log.warning("internal service: %s", exc.message)
    return error_response(exc.status, exc.code, exc.message)


def _unexpected(exc):
    log.exception("unhandled error")
    return error_response(500, "internal_server_error", "the server failed to answer")


def register(app):
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(InternalError, _internal_error)
    app.register_error_handler(Exception, _unexpected)
