"""The public REST API: create_app() builds it from the settings in config.py.

One module per unit of the contract (items.py, service.py, ...) holds its
request models and routes; resource.py holds what they share.
"""

import importlib

from flask_openapi3 import Info, OpenAPI

from .. import __version__, contract, metrics, startup
from ..internal_client import InternalClient
from . import access_log, auth, errors, harden, pages, proxy, request_id, resource

SECURITY_SCHEMES = {
    resource.BEARER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "API token, {{ cookiecutter.__package }}_ and 49 base62 characters",
        "description": "made with `{{ cookiecutter.project }}-admin tokens create` (README.md, Authentication)",
    }
}


def create_app(overrides=None):
    """App factory; overrides (tests only) replace settings after the environment is read."""
    settings, tls_context = startup.api(overrides)
    app = _new_app(settings)
    client = InternalClient.from_settings(settings, tls_context)
    app.extensions["internal_client"] = client
    _register(app)
    _declare_idempotency_keys(app.api_doc)
    if app.config["ANONYMOUS_READS"]:
        _reads_need_no_token(app.api_doc)
    _wrap(app, client, metrics.for_api(settings))
    return app


def _new_app(settings):
    app = OpenAPI(
        __name__,
        info=Info(title="{{ cookiecutter.project }}", version=__version__),
        # The document is served by service.py; no UI pages with inline scripts.
        doc_ui=False,
        security_schemes=SECURITY_SCHEMES,
        validation_error_status=422,
        # The shape errors.py sends, not pydantic's error list.
        validation_error_model=errors.Error,
        validation_error_callback=errors.validation_error,
    )
    app.config.update(settings)
    app.json.sort_keys = False
    return app


def _register(app):
    """The converters, hooks and error handlers, then every unit's routes and the page."""
    app.url_map.converters["id"] = resource.IdConverter
    errors.register(app)
    auth.register(app)
    request_id.register(app)
    app.after_request(access_log.note_route)
    for unit in contract.UNITS:
        if not unit.admin:  # admin units serve the admin command, never the API
            app.register_api(importlib.import_module(f".{unit.name}", __package__).api)
    app.register_blueprint(pages.bp)


def _wrap(app, client, recorder):
    """The WSGI layers, innermost first: headers, the access line and metrics, proxy trust."""
    if app.config["HARDEN"]:
        harden.apply(app)
    client.observe = recorder.hop
    app.wsgi_app = access_log.wrap(app.wsgi_app, client, recorder.request)
    app.wsgi_app = proxy.trust_proxy(app.wsgi_app, app.config["PROXY_HOPS"])


def _declare_idempotency_keys(document):
    """Every POST of a resource takes an optional Idempotency-Key (resource.py)."""
    parameter = {
        "name": resource.IDEMPOTENCY_KEY,
        "in": "header",
        "required": False,
        "description": "the write is done once per key; a retry with it gets the first answer",
        # Anchored: a JSON Schema pattern matches anywhere in the string unless told.
        "schema": {"type": "string", "pattern": f"^{resource.WELL_FORMED_KEY.pattern}$"},
    }
    for path_item in document["paths"].values():
        create = path_item.get("post", {})
        if {resource.BEARER: []} in create.get("security", []):
            create.setdefault("parameters", []).append(parameter)


def _reads_need_no_token(document):
    """With ANONYMOUS_READS, a GET that asks for the bearer token may also go without one."""
    for path_item in document["paths"].values():
        read = path_item.get("get", {})
        if {resource.BEARER: []} in read.get("security", []):
            read["security"] = [{resource.BEARER: []}, {}]
