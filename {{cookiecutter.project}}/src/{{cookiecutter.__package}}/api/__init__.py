"""The public REST API: create_app() builds it from the settings in config.py."""

from flask_openapi3 import Info, OpenAPI

from .. import __version__, config, tls
from ..internal_client import InternalClient
from . import errors, harden, pages, proxy, routes


def create_app(overrides=None):
    """App factory; overrides (tests only) replace settings after the environment is read."""
    settings = config.load_or_exit()
    if overrides:
        settings.update(overrides)
    try:
        config.require_token(settings)
        if config.trusted_clients(settings) and not tls.enabled(settings):
            # The internal service takes other hosts over mutual TLS only.
            raise config.SettingsError(
                f"{config.PREFIX}_TRUSTED_CLIENTS is set (several hosts) but"
                f" {config.PREFIX}_INTERNAL_TLS_CA is empty: set the TLS files, or set"
                f" {config.PREFIX}_TRUSTED_CLIENTS= (empty) to run on one host"
            )
        # The TLS files are checked here, so a bad one stops the worker with one line.
        internal_client = InternalClient.from_settings(settings)
    except config.SettingsError as exc:
        raise SystemExit(f"{config.PREFIX.lower()}-api: {exc}") from None

    app = OpenAPI(
        __name__,
        info=Info(title="{{ cookiecutter.project }}", version=__version__),
        # The document is served by routes.py; no UI pages with inline scripts.
        doc_ui=False,
        # An empty map: null is not a valid securitySchemes in OpenAPI 3.1.
        security_schemes={},
        validation_error_status=422,
        # The shape errors.py sends, not pydantic's error list.
        validation_error_model=routes.Error,
        validation_error_callback=errors.validation_error,
    )
    app.config.update(settings)
    app.json.sort_keys = False
    app.extensions["internal_client"] = internal_client

    errors.register(app)
    app.register_api(routes.api)
    app.register_blueprint(pages.bp)
    if app.config["HARDEN"]:
        harden.apply(app)
    app.wsgi_app = proxy.trust_proxy(app.wsgi_app, app.config["PROXY_HOPS"])
    return app
