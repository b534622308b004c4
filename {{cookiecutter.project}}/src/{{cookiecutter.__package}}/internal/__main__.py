"""`python -m {{ cookiecutter.__package }}.internal`: check the settings, open the store, then serve."""

import logging
import signal

from .. import config, logs, metrics, startup
from . import migrations
from .operations import OperationError
from .server import InternalServer, inherited_socket
from .storage import SETTING, UNUSABLE, Storage

PROGRAM = f"{config.PREFIX.lower()}-internal"
log = logging.getLogger(__name__)


def open_storage(settings):
    """The store with its schema up to date, or SystemExit with one line saying why not."""
    schema = migrations.schema()
    try:
        return Storage.from_settings(settings, schema)
    except migrations.MigrationError as exc:
        raise SystemExit(f"{PROGRAM}: {exc}") from None
    except (*UNUSABLE, OperationError) as exc:
        named = f"{config.PREFIX}_{SETTING}={settings[SETTING]!r}"
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        # One line, though the store's own words may take several.
        reason = " ".join(str(reason).split())
        raise SystemExit(f"{PROGRAM}: the database at {named} cannot be used: {reason}") from None


def recorder(settings):
    """This process's metrics, served here when INTERNAL_METRICS_PORT is set."""
    try:
        metrics.prepare(settings, "internal")
        made = metrics.for_internal(settings)
        if settings["INTERNAL_METRICS_PORT"]:
            metrics.serve(settings, settings["INTERNAL_METRICS_PORT"], ["internal"])
    except OSError as exc:
        what = f"{config.PREFIX}_METRICS_DIR or {config.PREFIX}_INTERNAL_METRICS_PORT"
        raise SystemExit(f"{PROGRAM}: the metrics ({what}) cannot be set up: {exc}") from None
    return made


def listen(host, port, storage, settings, tls_context, sock, made):
    try:
        return InternalServer(host, port, storage, settings, tls_context, sock=sock, recorder=made)
    except OSError as exc:
        storage.close()
        where = config.join_host_port(host, port)
        raise SystemExit(f"{PROGRAM}: cannot listen on {where}: {exc.strerror}") from None


def main():
    config.load_dotenv()
    sock = inherited_socket()
    settings, host, port, tls_context = startup.internal(sock)
    logs.configure(settings)
    made = recorder(settings)
    storage = open_storage(settings)
    server = listen(host, port, storage, settings, tls_context, sock, made)
    # SIGTERM (systemd, honcho) ends serve_forever like Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    tls_note = " with mutual TLS" if tls_context is not None else ""
    log.info("listening on %s%s", config.join_host_port(host, port), tls_note)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        storage.close()


if __name__ == "__main__":
    main()
