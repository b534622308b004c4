"""The service's own routes: liveness, readiness and the OpenAPI document."""

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag

from .. import contract
from .resource import CALLS, INVALID, Status, client

api = APIBlueprint("service", __name__, url_prefix="/api/v1", abp_tags=[Tag(name="service")])


@api.get("/health", responses={200: Status, **INVALID})
def health():
    """Liveness: answers without asking the internal service."""
    return {"status": "ok"}


@api.get("/ready", responses={200: Status, **CALLS})
def ready():
    """Readiness: 200 only when the internal service answers."""
    client().call(contract.service.ping)
    return {"status": "ready"}


@api.get("/openapi.json", doc_ui=False)
def openapi_document():
    return current_app.api_doc
