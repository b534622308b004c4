"""`python -m {{ cookiecutter.__package }}.internal`: check the settings, then serve."""

import logging
import signal
import sys

from .. import config, tls
from ..bindcheck import BindError, check_bind
from .server import InternalServer, inherited_socket
from .storage import Storage


def main():
    config.load_dotenv()
    settings = config.load_or_exit()
    logging.basicConfig(
        level=settings["LOG_LEVEL"], format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    sock = inherited_socket()
    try:
        config.require_token(settings)
        several_hosts = bool(config.trusted_clients(settings))
        if sock is not None:
            host, port = sock.getsockname()[:2]
            check_bind("INTERNAL_BIND", host, several_hosts)
        else:
            host = check_bind("INTERNAL_BIND", settings["INTERNAL_BIND"], several_hosts)
            port = settings["INTERNAL_PORT"]
        # Every TLS file is checked before the database is opened or anything listens.
        tls.server_context(settings)
        if several_hosts and not tls.enabled(settings):
            raise config.SettingsError(
                f"{config.PREFIX}_TRUSTED_CLIENTS is set (several hosts) but"
                f" {config.PREFIX}_INTERNAL_TLS_CA is empty: other hosts are served over"
                " mutual TLS only (deploy/pki.sh makes the files)"
            )
    except (BindError, config.SettingsError) as exc:
        raise SystemExit(f"{config.PREFIX.lower()}-internal: {exc}") from None
    storage = Storage(settings["STATE_DIR"])
    try:
        server = InternalServer(host, port, storage, settings, sock=sock)
    except config.SettingsError as exc:
        storage.close()
        raise SystemExit(f"{config.PREFIX.lower()}-internal: {exc}") from None
    except OSError as exc:
        storage.close()
        where = config.join_host_port(host, port)
        raise SystemExit(
            f"{config.PREFIX.lower()}-internal: cannot listen on {where}: {exc.strerror}"
        ) from None
    # SIGTERM (systemd, honcho) ends serve_forever like Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logging.getLogger(__name__).info(
        "listening on %s%s",
        config.join_host_port(host, port),
        " with mutual TLS" if server.tls is not None else "",
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        storage.close()


if __name__ == "__main__":
    main()
