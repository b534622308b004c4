"""The one settings module: every setting comes from an environment variable
named {{ cookiecutter.__package | upper }}_<NAME>, read through Flask's from_prefixed_env.

Both processes (the public API and the internal service) call load(), through
startup.py, which also refuses a bad value with one line; no other module
reads the environment.
"""

import logging
import math
import os
from pathlib import Path

from flask import Config

PREFIX = "{{ cookiecutter.__package | upper }}"

# The type of each default is the type the setting must have.
DEFAULTS = {
    # Send the hardening headers (flask-talisman and api/harden.py).
    "HARDEN": {{ "True" if cookiecutter.harden is sameas true else "False" }},
    # Where gunicorn listens; nginx proxies to it.
    "PUBLIC_BIND": "127.0.0.1",
    "PUBLIC_PORT": {{ cookiecutter.public_port | int }},
    # Proxies in front of the API that append to X-Forwarded-For/-Proto (nginx: 1).
    # 0 means none: forwarded headers are ignored. Only PROXY_ADDRESSES are believed.
    "PROXY_HOPS": 1,
    # gunicorn worker processes, and threads in each (gunicorn_worker.py); each
    # thread keeps one connection to the internal service. Two: on two cores a
    # third worker added no throughput within the noise and about 10 MB of PSS
    # (README.md, "Performance"). On a bigger host, about one per core.
    "WORKERS": 2,
    "THREADS": 4,
    # Seconds gunicorn keeps an idle connection open for the next request; longer
    # than nginx's upstream keepalive_timeout (60 s), so that nginx closes first.
    "KEEPALIVE": 75,
    # Where the internal service listens. Wildcards are always refused.
    "INTERNAL_BIND": "127.0.0.1",
    "INTERNAL_PORT": {{ cookiecutter.internal_port | int }},
    # Where the API finds the internal service: HOST:PORT, or several separated by
    # commas (instances that share one database: each thread's connection goes to
    # the next, and a read is retried on another when one is down).
    # Empty means INTERNAL_BIND:INTERNAL_PORT.
    "INTERNAL_ADDRESS": "",
    # Shared secret sent in the first message of every connection; at least 32 characters.
    "INTERNAL_TOKEN": "",
    # The second secret: a connection that shows it may run the admin operations
    # (tokens, audit). The internal service and the admin command have it; the
    # API never does (it drops it at start). Empty: no admin connection at all.
    "ADMIN_TOKEN": "",
    # GET on the resources without a token; writes always need one.
    "ANONYMOUS_READS": {{ "True" if cookiecutter.anonymous_reads is sameas true else "False" }},
    # Brute force: past AUTH_FAILURES failed authentications from one address
    # within AUTH_WINDOW seconds, that address gets 429 for the rest of the window.
    "AUTH_FAILURES": 20,
    "AUTH_WINDOW": 60.0,
    # Days a new API token lasts unless the admin command is told otherwise, and the most allowed.
    "TOKEN_DAYS": 90,
    "TOKEN_MAX_DAYS": 365,
    # Hours an Idempotency-Key is kept: a retry within them gets the first answer.
    "IDEMPOTENCY_HOURS": 24,
    # Client side: seconds to connect, and to wait for an answer.
    "INTERNAL_CONNECT_TIMEOUT": 1.0,
    "INTERNAL_TIMEOUT": 5.0,
    # Server side: a message once started must arrive within READ_TIMEOUT seconds;
    # a connection idle for IDLE_TIMEOUT seconds is closed.
    "INTERNAL_READ_TIMEOUT": 5.0,
    "INTERNAL_IDLE_TIMEOUT": 300.0,
    # A new connection must complete TLS (if on) and show its secret within this
    # many seconds, or it is closed: a peer without the secret holds a slot briefly.
    "INTERNAL_AUTH_TIMEOUT": 3.0,
    # Largest message in bytes: the most the service buffers for one message.
    "INTERNAL_MAX_MESSAGE": 1048576,
    # Connections the internal service keeps at once, authenticated or not. The
    # API needs one per worker (thread); the rest is room for restarts and the
    # admin command. Past it a new connection is closed at once.
    "INTERNAL_MAX_CONNECTIONS": 64,
    # Comma-separated addresses or CIDRs of other hosts allowed to reach the
    # internal service. Empty means this host only (loopback).
    "TRUSTED_CLIENTS": {{ cookiecutter.__trusted_clients | replace(' ', ',') | tojson }},
    # Mutual TLS between the hosts (tls.py; deploy/pki.sh makes the files). On
    # when INTERNAL_TLS_CA is set, and then required with TRUSTED_CLIENTS.
    # The project CA's certificate, which must have signed the other side's.
    "INTERNAL_TLS_CA": "",
    # This side's certificate: the server's on the internal host, a client's on an API host.
    "INTERNAL_TLS_CERT": "",
    # Its private key (not encrypted; mode 0640 or 0600).
    "INTERNAL_TLS_KEY": "",
{%- if cookiecutter.database == "postgresql" %}
    # The PostgreSQL database of the internal service: a libpq conninfo
    # ("host=db1,db2 dbname=x user=y sslmode=verify-full") or a postgresql:// URL,
    # without a password (a passfile= or a client certificate instead). Required
    # by the internal service; checked at its start (startup.py).
    "DATABASE_URL": "",
    # Connections each internal service instance keeps to it.
    "DATABASE_CONNECTIONS": 10,
{%- else %}
    # SQLite database and other state of the internal service.
    "STATE_DIR": "state",
{%- endif %}
    # Largest request body the API reads; a 10,000-character body escaped as JSON fits.
    "MAX_CONTENT_LENGTH": 131072,
    # Seconds a request body may stall before the API answers 408 (nginx's
    # client_body_timeout in front is the same): no client holds a worker longer.
    "BODY_TIMEOUT": 10.0,
    "LOG_LEVEL": "INFO",
    # text (readable lines) or json (one object per line), on stderr (logs.py).
    "LOG_FORMAT": "text",
    # Prometheus metrics (metrics.py) on 127.0.0.1:METRICS_PORT, served by the
    # API's gunicorn master; empty: off. INTERNAL_METRICS_PORT: the internal
    # service serves its own, for a host where it runs alone. METRICS_DIR: where
    # the processes of one host leave their samples (deployed: /run/PROJECT/metrics).
    "METRICS_PORT": "",
    "INTERNAL_METRICS_PORT": "",
    "METRICS_DIR": "metrics",
}


# The only peers whose X-Forwarded-* headers count: the proxy runs on this host.
# gunicorn's forwarded_allow_ips and api/proxy.py both read this one list.
PROXY_ADDRESSES = ("127.0.0.1", "::1")


# The range of every numeric setting: a finite number within these bounds, so
# that no value (NaN, Infinity, 0, 1e300) can start a server that cannot work.
RANGES = {
    "PUBLIC_PORT": (1, 65535),
    "INTERNAL_PORT": (1, 65535),
    "PROXY_HOPS": (0, 10),
    # A worker is a process with its own connection; more than this on one host
    # is a typo, and forking thousands would take the host down.
    "WORKERS": (1, 64),
    # Each thread is a connection to the internal service (INTERNAL_MAX_CONNECTIONS).
    "THREADS": (1, 64),
    "KEEPALIVE": (1, 3600),
    "INTERNAL_CONNECT_TIMEOUT": (0.05, 60.0),
    "INTERNAL_TIMEOUT": (0.05, 600.0),
    "INTERNAL_READ_TIMEOUT": (0.05, 600.0),
    "INTERNAL_IDLE_TIMEOUT": (1.0, 86400.0),
    "INTERNAL_AUTH_TIMEOUT": (0.05, 60.0),
    # The first message, with the secret, must fit; 64 MiB is past any page of rows.
    "INTERNAL_MAX_MESSAGE": (4096, 64 * 1024 * 1024),
    "INTERNAL_MAX_CONNECTIONS": (4, 4096),
    "MAX_CONTENT_LENGTH": (1024, 64 * 1024 * 1024),
    "BODY_TIMEOUT": (0.5, 300.0),
    "AUTH_FAILURES": (1, 100000),
    "AUTH_WINDOW": (1.0, 86400.0),
    "TOKEN_DAYS": (1, 36500),
    "TOKEN_MAX_DAYS": (1, 36500),
    "IDEMPOTENCY_HOURS": (1, 24 * 30),
{%- if cookiecutter.database == "postgresql" %}
    # Each is a backend process on the server (max_connections is 100 by default).
    "DATABASE_CONNECTIONS": (2, 500),
{%- endif %}
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


class SettingsError(ValueError):
    """A setting has a value of the wrong type or out of range."""


def _env_name(key):
    return f"{PREFIX}_{key}"


def _coerce(key, value):
    """Give a value from the environment the type of its default, or say what is wrong."""
    expected = type(DEFAULTS[key])
    if expected is bool:
        if isinstance(value, bool):
            return value
        raise SettingsError(f"{_env_name(key)}={value!r} is not allowed: use true or false")
    if expected is str:
        # from_prefixed_env parses values as JSON; a string setting keeps its raw text.
        return value if isinstance(value, str) else os.environ[_env_name(key)]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or isinstance(value, bool):
        kind = "an integer" if expected is int else "a number"
        raise SettingsError(f"{_env_name(key)}={_shown(key)} is not allowed: use {kind}")
    return _in_range(key, value)


def _shown(key):
    """The variable's value as it was written, for the one line that refuses it."""
    return repr(os.environ.get(_env_name(key), ""))


def _in_range(key, value):
    low, high = RANGES[key]
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingsError(f"{_env_name(key)}={_shown(key)} is not allowed: use {low} to {high}")
    if not low <= value <= high:
        raise SettingsError(f"{_env_name(key)}={_shown(key)} is out of range: use {low} to {high}")
    return value


def _checked_together(settings):
    """The rules between settings, and the one text setting with a fixed set of values."""
    level = settings["LOG_LEVEL"].upper()
    if level not in LOG_LEVELS:
        written = f"{_env_name('LOG_LEVEL')}={settings['LOG_LEVEL']!r}"
        raise SettingsError(f"{written} is not one of {', '.join(LOG_LEVELS)}")
    settings["LOG_LEVEL"] = level
    if settings["LOG_FORMAT"] not in LOG_FORMATS:
        written = f"{_env_name('LOG_FORMAT')}={settings['LOG_FORMAT']!r}"
        raise SettingsError(f"{written} is not one of {', '.join(LOG_FORMATS)}")
    for key in ("METRICS_PORT", "INTERNAL_METRICS_PORT"):
        _metrics_port(settings, key)
    if settings["INTERNAL_ADDRESS"]:
        split_addresses(settings["INTERNAL_ADDRESS"])
    _threads_fit(settings)
    if settings["TOKEN_DAYS"] > settings["TOKEN_MAX_DAYS"]:
        raise SettingsError(
            f"{_env_name('TOKEN_DAYS')}={settings['TOKEN_DAYS']} is more than"
            f" {_env_name('TOKEN_MAX_DAYS')}={settings['TOKEN_MAX_DAYS']}"
        )


# Connections to the internal service kept for a restarting worker and the admin command.
SPARE_CONNECTIONS = 4


def _threads_fit(settings):
    """Every API thread holds a connection to the internal service: they must fit its limit."""
    threads = settings["WORKERS"] * settings["THREADS"]
    room = settings["INTERNAL_MAX_CONNECTIONS"] - SPARE_CONNECTIONS
    if threads > room:
        raise SettingsError(
            f"{_env_name('WORKERS')}={settings['WORKERS']} times {_env_name('THREADS')}="
            f"{settings['THREADS']} is {threads} connections to the internal service; "
            f"{_env_name('INTERNAL_MAX_CONNECTIONS')}={settings['INTERNAL_MAX_CONNECTIONS']}"
            f" leaves room for {room}"
        )


def _metrics_port(settings, key):
    """Empty (off), or a port of its own in 1024-65535."""
    text = settings[key].strip()
    taken = {settings["PUBLIC_PORT"], settings["INTERNAL_PORT"]}
    if text and (not text.isdigit() or not 1024 <= int(text) <= 65535 or int(text) in taken):
        raise SettingsError(
            f"{_env_name(key)}={settings[key]!r} must be empty (off) or a port in 1024-65535"
            " that neither server uses"
        )
    settings[key] = text


{%- if cookiecutter.database == "postgresql" %}


def database_url(settings):
    """DATABASE_URL as libpq reads it (a dict); refused when missing, malformed, or
    holding a password. A password in a setting ends up in the process's
    environment, in unit files and in `systemctl show`: libpq reads it from a
    passfile (passfile=..., mode 0600) instead, or a client certificate replaces it."""
    import re

    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    name = _env_name("DATABASE_URL")
    text = settings["DATABASE_URL"]
    if not text.strip():
        raise SettingsError(
            f"{name} is missing: set the libpq conninfo or postgresql:// URL of the database"
            " (README.md, PostgreSQL and several hosts)"
        )
    try:
        parsed = conninfo_to_dict(text)
    except ProgrammingError as exc:
        # libpq's reason, without the parts of the value it quotes: they may hold a password.
        reason = re.sub(r'"[^"]*"', '"..."', " ".join(str(exc).split()))
        raise SettingsError(
            f"{name} is not a libpq conninfo (host=... dbname=...) or postgresql:// URL: {reason}"
        ) from None
    if parsed.get("password"):
        raise SettingsError(
            f"{name} holds a password: leave it out, and give libpq a passfile"
            " (passfile=PATH, a file of mode 0600) or a client certificate (sslcert=, sslkey=)"
        )
    if os.environ.get("PGPASSWORD"):
        raise SettingsError(
            f"PGPASSWORD is set: the internal service takes no password from the environment;"
            f" give libpq a passfile (passfile= in {name}) or a client certificate"
        )
    _database_ports(name, parsed)
    return parsed


def _database_ports(name, parsed):
    """libpq parses a port only when it connects: a typo would show as a failure to
    connect, so the ports are checked here. One port for every host, or one each."""
    ports = parsed.get("port", "").split(",") if parsed.get("port") else []
    hosts = parsed.get("host", "").split(",") if parsed.get("host") else [""]
    for port in ports:
        if not (port.strip().isdigit() and 1 <= int(port) <= 65535):
            raise SettingsError(f"{name}: port {port!r} is not a port number (1 to 65535)")
    if len(ports) > 1 and len(ports) != len(hosts):
        raise SettingsError(
            f"{name}: {len(ports)} ports for {len(hosts)} hosts; give one port, or one per host"
        )
{%- endif %}


def log_level(settings):
    """The logging module's number for LOG_LEVEL (already checked)."""
    return logging.getLevelName(settings["LOG_LEVEL"])


def load():
    """Return the settings: defaults overridden by {{ cookiecutter.__package | upper }}_* variables."""
    settings = Config(str(Path.cwd()))
    settings.from_mapping(DEFAULTS)
    settings.from_prefixed_env(PREFIX)
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        # A misspelt variable would otherwise be ignored without a word.
        raise SettingsError(
            f"{_env_name(unknown[0])} is not a setting; known: {', '.join(sorted(DEFAULTS))}"
        )
    for key in DEFAULTS:
        settings[key] = _coerce(key, settings[key])
    _checked_together(settings)
    if not settings["INTERNAL_ADDRESS"]:
        settings["INTERNAL_ADDRESS"] = join_host_port(
            settings["INTERNAL_BIND"], settings["INTERNAL_PORT"]
        )
    return settings


def load_dotenv(path=".env"):
    """Development convenience: read a .env file; variables already set win."""
    from dotenv import load_dotenv as _load

    _load(path, override=False)


def join_host_port(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def several_hosts(settings):
    """Whether other hosts may reach the internal service (TRUSTED_CLIENTS set)."""
    return bool(settings["TRUSTED_CLIENTS"].replace(",", "").strip())


def split_addresses(text):
    """'127.0.0.1:8001' or '10.0.0.5:8001,[2001:db8::5]:8001' -> [(host, port), ...]."""
    found = []
    for address in text.split(","):
        host, sep, port = address.strip().rpartition(":")
        if not sep or not host.strip("[]") or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise SettingsError(
                f"{_env_name('INTERNAL_ADDRESS')}={text!r} must be HOST:PORT,"
                " or several separated by commas ([v6]:PORT for IPv6)"
            )
        found.append((host.strip("[]"), int(port)))
    return found
