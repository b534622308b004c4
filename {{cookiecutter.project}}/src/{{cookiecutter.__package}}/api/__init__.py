"""The public REST API: create_app() builds it from the settings in config.py.

One module per unit of the contract (items.py, service.py, ...) holds its
request models and routes; resource.py holds what they share.
"""

import importlib

from flask_openapi3 import Info, OpenAPI

from .. import __version__, contract, startup
from ..internal_client import InternalClient
from . import errors, harden, pages, proxy, resource


def create_app(overrides=None):
    """App factory; overrides (tests only) replace settings after the environment is read."""
    settings, tls_context = startup.api(overrides)
    app = OpenAPI(
        __name__,
        info=Info(title="{{ cookiecutter.project }}", version=__version__),
        # The document is served by service.py; no UI pages with inline scripts.
        doc_ui=False,
        # An empty map: null is not a valid securitySchemes in OpenAPI 3.1.
        security_schemes={},
        validation_error_status=422,
        # The shape errors.py sends, not pydantic's error list.
        validation_error_model=errors.Error,
        validation_error_callback=errors.validation_error,
    )
    app.config.update(settings)
    app.json.sort_keys = False
    app.extensions["internal_client"] = InternalClient.from_settings(settings, tls_context)

    errors.register(app)
    app.before_request(resource.require_json_object)
    for unit in contract.UNITS:
        app.register_api(importlib.import_module(f".{unit.name}", __package__).api)
    app.register_blueprint(pages.bp)
    if app.config["HARDEN"]:
        harden.apply(app)
    app.wsgi_app = proxy.trust_proxy(app.wsgi_app, app.config["PROXY_HOPS"])
    return app
