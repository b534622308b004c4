"""The one start-up check. The internal service, the API's app factory and its
gunicorn settings each get their settings from here, so every rule and the
one-line refusal are written once:

* the shared token is set and long enough, on both sides; the admin secret,
  if set, too, and unlike it; the API drops the admin secret at once;
* several hosts (TRUSTED_CLIENTS set) only over mutual TLS, on both sides;
* the TLS files are read and checked once, into the context that is then used;
{%- if cookiecutter.database == "postgresql" %}
* the internal service's DATABASE_URL is there, well formed, and without a password;
{%- endif %}
* listen addresses pass the bind check (bindcheck.py).

A bad value ends the process with one line on stderr, naming the variable:
"PROGRAM: PREFIX_NAME=... is not allowed: ...".
"""

import contextlib
import os

from . import config, tls
from .bindcheck import BindError, check_bind


@contextlib.contextmanager
def one_line(program):
    """Turn a refused setting into SystemExit with one line: exit status 1, no traceback."""
    try:
        yield
    except (config.SettingsError, BindError) as exc:
        raise SystemExit(f"{config.PREFIX.lower()}-{program}: {exc}") from None


def _token(settings, key="INTERNAL_TOKEN"):
    token = settings[key]
    if len(token) < 32:
        what = "is missing" if not token else f"is too short ({len(token)} characters)"
        raise config.SettingsError(
            f"{config.PREFIX}_{key} {what}: set a random value of at least 32 characters"
        )


def _admin_token(settings):
    """Optional; when set, as strong as the other and not the same."""
    if not settings["ADMIN_TOKEN"]:
        return
    _token(settings, "ADMIN_TOKEN")
    if settings["ADMIN_TOKEN"] == settings["INTERNAL_TOKEN"]:
        raise config.SettingsError(
            f"{config.PREFIX}_ADMIN_TOKEN is the same as {config.PREFIX}_INTERNAL_TOKEN:"
            " the API would hold the admin secret; set another random value"
        )


def _tls(settings, make_context):
    """The TLS context MAKE_CONTEXT builds from the files, if any; several hosts need one."""
    context = make_context(settings)
    if config.several_hosts(settings) and context is None:
        raise config.SettingsError(
            f"{config.PREFIX}_TRUSTED_CLIENTS is set (several hosts) but"
            f" {config.PREFIX}_INTERNAL_TLS_CA is empty: the internal service takes other"
            " hosts over mutual TLS only; set the INTERNAL_TLS_* files (deploy/pki.sh makes"
            f" them), or set {config.PREFIX}_TRUSTED_CLIENTS= (empty) to run on one host"
        )
    return context


def api(overrides=None):
    """The API's settings and its client TLS context (None without TLS).

    OVERRIDES (tests only) replace settings after the environment is read.
    """
    # The API never holds the admin secret, even where both read one .env file.
    os.environ.pop(f"{config.PREFIX}_ADMIN_TOKEN", None)
    with one_line("api"):
        settings = config.load()
        settings.update(overrides or {})
        settings["ADMIN_TOKEN"] = ""
        _token(settings)
        return settings, _tls(settings, tls.client_context)


def admin():
    """The admin command's settings and client TLS context: it needs the admin secret."""
    with one_line("admin"):
        settings = config.load()
        _token(settings)
        _token(settings, "ADMIN_TOKEN")
        return settings, _tls(settings, tls.client_context)


def public_listener():
    """The settings gunicorn needs, and the checked address it listens on."""
    with one_line("api"):
        settings = config.load()
        # nginx is the public listener; gunicorn stays on loopback.
        return settings, check_bind("PUBLIC_BIND", settings["PUBLIC_BIND"])


def internal(sock=None):
    """The internal service's settings, where it listens, and its server TLS context.

    SOCK: a listening socket inherited from systemd; its own address is checked then.
    """
    with one_line("internal"):
        settings = config.load()
        _token(settings)
        _admin_token(settings)
{%- if cookiecutter.database == "postgresql" %}
        config.database_url(settings)
{%- endif %}
        several = config.several_hosts(settings)
        if sock is not None:
            host, port = sock.getsockname()[:2]
            check_bind("INTERNAL_BIND", host, several)
        else:
            host = check_bind("INTERNAL_BIND", settings["INTERNAL_BIND"], several)
            port = settings["INTERNAL_PORT"]
        # Every TLS file is checked before the database is opened or anything listens.
        return settings, host, port, _tls(settings, tls.server_context)
