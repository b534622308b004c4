"""The public REST API: create_app() builds it from the settings in config.py."""

from flask_openapi3 import Info, OpenAPI

from .. import __version__, config
from ..internal_client import InternalClient
from . import errors, harden, pages, proxy, routes


def create_app(overrides=None):
    """App factory; overrides (tests only) replace settings after the environment is read."""
    settings = config.load_or_exit()
    if overrides:
        settings.update(overrides)
    try:
        config.require_token(settings)
    except config.SettingsError as exc:
        raise SystemExit(f"{config.PREFIX.lower()}-api: {exc}") from None

    app = OpenAPI(
        __name__,
        info=Info(title="{{ cookiecutter.project }}", version=__version__),
        # The document is served by routes.py; no UI pages with inline scripts.
        doc_ui=False,
        validation_error_status=422,
        validation_error_callback=errors.validation_error,
    )
    app.config.update(settings)
    app.json.sort_keys = False
    app.extensions["internal_client"] = InternalClient.from_settings(settings)

    errors.register(app)
    app.register_api(routes.api)
    app.register_blueprint(pages.bp)
    if app.config["HARDEN"]:
        harden.apply(app)
    app.wsgi_app = proxy.trust_proxy(app.wsgi_app, app.config["PROXY_HOPS"])
    return app
