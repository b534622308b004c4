"""The v1 endpoints. Request models here are also the source of the OpenAPI document."""

from flask import current_app, request, url_for
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from ..internal.operations import BODY_MAX, INT_MAX, LIMIT_MAX, TITLE_MAX
from .errors import error_response

api = APIBlueprint("api", __name__, url_prefix="/api/v1")
ITEMS = [Tag(name="items")]
SERVICE = [Tag(name="service")]


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    title: str = Field(min_length=1, max_length=TITLE_MAX)
    body: str = Field(default="", max_length=BODY_MAX)


class Item(ItemIn):
    id: int
    created_at: str
    updated_at: str


class ItemPath(BaseModel):
    id: int = Field(ge=1, le=INT_MAX)


class Page(BaseModel):
    limit: int = Field(default=20, ge=1, le=LIMIT_MAX)
    offset: int = Field(default=0, ge=0, le=INT_MAX)


class ItemList(BaseModel):
    items: list[Item]
    total: int
    limit: int
    offset: int


class Status(BaseModel):
    status: str


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    message: str
    field: str | None = None


class Error(BaseModel):
    """The shape of every error the API sends (errors.py)."""

    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail


# Declared, so that the OpenAPI document describes every answer a client can get.
# flask-openapi3 gives an operation without a 422 one shaped as pydantic's error
# list, so even the operations that never send it declare ours.
INVALID = {422: Error}
NOT_FOUND = {404: Error}
# A body that is not JSON, not a JSON object, or larger than MAX_CONTENT_LENGTH.
BAD_BODY = {400: Error, 413: Error, 415: Error}
# The internal service failed, is down, or did not answer in time.
UPSTREAM = {502: Error, 503: Error, 504: Error}


def internal():
    return current_app.extensions["internal_client"]


def _chunked_body_too_large():
    """A body without Content-Length (chunked) is read up to MAX_CONTENT_LENGTH, and
    werkzeug drops the rest without a word: look for one byte past the limit."""
    request.get_data()
    return bool(request.environ["wsgi.input"].read(1))


@api.before_request
def require_json_object():
    """Bodies must be a JSON object: 415 for another media type, 400 for broken JSON."""
    if request.method not in ("POST", "PUT"):
        return None
    if not request.is_json:
        return error_response(
            415, "unsupported_media_type", "body: Content-Type must be application/json", "body"
        )
    if request.content_length is None and _chunked_body_too_large():
        raise RequestEntityTooLarge()
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


@api.get("/health", tags=SERVICE, responses={200: Status, **INVALID})
def health():
    """Liveness: answers without asking the internal service."""
    return {"status": "ok"}


@api.get("/ready", tags=SERVICE, responses={200: Status, **INVALID, **UPSTREAM})
def ready():
    """Readiness: 200 only when the internal service answers."""
    internal().call("service.ping")
    return {"status": "ready"}


@api.get("/openapi.json", doc_ui=False)
def openapi_document():
    return current_app.api_doc


@api.get("/items", tags=ITEMS, responses={200: ItemList, **INVALID, **UPSTREAM})
def list_items(query: Page):
    """List items, oldest first."""
    return internal().call("items.list", limit=query.limit, offset=query.offset)


@api.post("/items", tags=ITEMS, responses={201: Item, **BAD_BODY, **INVALID, **UPSTREAM})
def create_item(body: ItemIn):
    """Create an item; the Location header points at it."""
    item = internal().call("items.create", title=body.title, body=body.body)
    location = url_for("api.get_item", id=item["id"])
    return item, 201, {"Location": location}


@api.get("/items/<int:id>", tags=ITEMS, responses={200: Item, **NOT_FOUND, **INVALID, **UPSTREAM})
def get_item(path: ItemPath):
    """Read one item."""
    return internal().call("items.get", id=path.id)


@api.put(
    "/items/<int:id>",
    tags=ITEMS,
    responses={200: Item, **BAD_BODY, **NOT_FOUND, **INVALID, **UPSTREAM},
)
def update_item(path: ItemPath, body: ItemIn):
    """Replace an item's title and body."""
    return internal().call("items.update", id=path.id, title=body.title, body=body.body)


@api.delete(
    "/items/<int:id>", tags=ITEMS, responses={204: None, **NOT_FOUND, **INVALID, **UPSTREAM}
)
def delete_item(path: ItemPath):
    """Delete one item."""
    internal().call("items.delete", id=path.id)
    return "", 204
