"""What every unit module of the API shares, written once.

* models(): a resource's request model, built from the contract's fields,
  and the row and page models of its answers, so the OpenAPI document states
  the same limits the internal service enforces.
* IdPath (the path's id) and Page (?limit=&offset=).
* The answers every route may give, to declare in its `responses`.
* blueprint(name): a resource's blueprint, where every route needs a bearer
  token (auth.py) and says so in the OpenAPI document, with 401, 403 and 429.
* calls(resource): the typed client facade bound to the app's internal client
  and to the request's caller.
* require_json_object: bodies are a JSON object, or a clear 400/413/415/422.
* IdConverter: the one spelling of an id in a URL; no_content(): a bare 204.
"""

import re

from flask import current_app, g, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field, create_model
from werkzeug.exceptions import (
    BadRequest,
    ClientDisconnected,
    HTTPException,
    RequestEntityTooLarge,
)
from werkzeug.routing import BaseConverter

from .. import contract
from ..internal_client import InternalClient, ResourceCalls
from . import auth
from .errors import Error, error_response


class IdConverter(BaseConverter):
    """<id:name> in a route: 1 to 19 ASCII digits, no leading zero; anything else is 404.

    werkzeug's int converter also takes any Unicode digit ("١", "１") and
    leading zeros, so one row would have many URLs, and a rule in front keyed on
    the path could be passed by another spelling. (Past 64 bits, IdPath's
    bound answers 422.)
    """

    regex = r"[1-9][0-9]{0,18}"

    def to_python(self, value):
        return int(value)

    def to_url(self, value):
        return str(int(value))


def no_content():
    """204 with nothing at all: no body, so no Content-Type either."""
    response = current_app.response_class(status=204)
    del response.headers["Content-Type"]
    return response


class IdPath(BaseModel):
    id: int = Field(ge=1, le=contract.INT_MAX)


class Page(BaseModel):
    limit: int = Field(default=20, ge=1, le=contract.PAGE_MAX)
    offset: int = Field(default=0, ge=0, le=contract.INT_MAX)


class Status(BaseModel):
    status: str


# Declared, so that the OpenAPI document describes every answer a client can get.
# flask-openapi3 gives an operation without a 422 one shaped as pydantic's error
# list, so even the operations that never send it declare ours.
INVALID = {422: Error}
NOT_FOUND = {404: Error}
# A body that is not JSON, not a JSON object, or larger than MAX_CONTENT_LENGTH.
BAD_BODY = {400: Error, 413: Error, 415: Error}
# The internal service failed, is down, or did not answer in time.
UPSTREAM = {502: Error, 503: Error, 504: Error}
# What any route that calls the internal service may answer besides its own.
CALLS = {**INVALID, **UPSTREAM}
# No token, a bad one, one without the scope; too many bad ones from one address.
REFUSED = {401: Error, 403: Error, 429: Error}
# The securitySchemes entry every resource's routes name.
BEARER = "bearer"


def blueprint(name, import_name):
    """The blueprint of resource NAME: /api/v1, tagged NAME, every route behind a bearer token."""
    bp = APIBlueprint(
        name,
        import_name,
        url_prefix="/api/v1",
        abp_tags=[Tag(name=name)],
        abp_security=[{BEARER: []}],
        abp_responses=REFUSED,
    )
    # In this order: who is calling first, so that an anonymous write is a 401
    # whatever its body, and no body is read before the caller is known.
    bp.before_request(auth.require)
    bp.before_request(require_json_object)
    bp.before_request(idempotency_key)
    return bp


IDEMPOTENCY_KEY = "Idempotency-Key"
WELL_FORMED_KEY = re.compile(r"[A-Za-z0-9._:-]{8,128}")


def idempotency_key():
    """A POST may carry an Idempotency-Key: well formed (a UUID is), or 400 naming it.
    The internal service then does the write once per key (internal/idempotency.py)."""
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None or request.method != "POST":
        return None
    if not WELL_FORMED_KEY.fullmatch(key):
        message = f"{IDEMPOTENCY_KEY}: must be 8 to 128 of A-Z, a-z, 0-9, '.', '_', ':' and '-'"
        return error_response(400, "bad_request", message, IDEMPOTENCY_KEY)
    g.idempotency_key = key
    return None


def client() -> InternalClient:
    """This app's client of the internal service (one connection per worker)."""
    return current_app.extensions["internal_client"]


def calls(resource) -> ResourceCalls:
    """resource's typed calls (create, get, list, update, delete) through this app's
    client, each carrying the request's token, client address and request id."""
    return ResourceCalls(resource, client, auth.caller)


def _annotation(field):
    default = ... if field.default is contract.REQUIRED else field.default
    if isinstance(field, contract.Text):
        limits = {"min_length": field.min_length, "max_length": field.max_length}
        return str, Field(default, **limits, pattern=contract.TEXT_PATTERN)
    if isinstance(field, contract.Integer):
        return int, Field(default, ge=field.minimum, le=field.maximum)
    if isinstance(field, contract.Boolean):
        return bool, Field(default)
    raise TypeError(f"no request model for {field!r}")


def models(name, resource):
    """(NAMEIn, NAME, NAMEList): the body of create and update (the resource's fields,
    nothing else, strictly typed), one row as answered (those plus the id and the
    two times), and a page as answered ({RESOURCE: [rows], total, limit, offset})."""
    fields = {key: _annotation(field) for key, field in resource.fields.items()}
    body = create_model(f"{name}In", __config__=ConfigDict(extra="forbid", strict=True), **fields)
    stamps = {"id": (int, ...), "created_at": (str, ...), "updated_at": (str, ...)}
    row = create_model(name, __base__=body, **stamps)
    page = {"total": (int, ...), "limit": (int, ...), "offset": (int, ...)}
    listing = create_model(f"{name}List", **{resource.name: (list[row], ...)}, **page)
    return body, row, listing


def _read_body():
    """Read the whole body now, so that every way it can fail is answered here: None,
    or the error answer. A body without Content-Length (chunked) is read up to
    MAX_CONTENT_LENGTH and werkzeug drops the rest without a word, so one byte
    past the limit is looked for."""
    try:
        request.get_data(cache=True)
        if request.content_length is None and request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
    except HTTPException as exc:
        if not isinstance(exc, ClientDisconnected):
            raise
        if isinstance(exc.__context__, TimeoutError):
            # BODY_TIMEOUT (gunicorn_api.pre_request): the client stopped sending.
            return error_response(408, "request_timeout", "body: did not arrive in time", "body")
        return _unreadable()
    except Exception:  # noqa: BLE001 - whatever the server's reader raised, the bytes were bad
        # Bad chunking (gunicorn's ParseException), a body cut short: nothing to serve.
        return _unreadable()
    return None


def _unreadable():
    return error_response(400, "bad_request", "body: could not be read", "body")


def require_json_object():
    """Bodies must be a JSON object: 415 for another media type, 400 for broken JSON."""
    if request.method not in ("POST", "PUT") or request.routing_exception is not None:
        return None
    if not request.is_json:
        return error_response(
            415, "unsupported_media_type", "body: Content-Type must be application/json", "body"
        )
    refused = _read_body()
    if refused is not None:
        return refused
    try:
        data = request.get_json()
    except BadRequest:
        return error_response(400, "bad_request", "body: not valid JSON", "body")
    except RecursionError:
        # MAX_CONTENT_LENGTH still lets a body nest deeper than the parser recurses.
        return error_response(400, "bad_request", "body: JSON nested too deeply", "body")
    if not isinstance(data, dict):
        return error_response(422, "invalid", "body: must be a JSON object", "body")
    return None
