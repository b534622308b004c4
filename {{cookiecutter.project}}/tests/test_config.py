"""Settings come from prefixed environment variables, typed, with one clear line per mistake."""

import pytest

from {{ cookiecutter.__package }} import config
from {{ cookiecutter.__package }}.bindcheck import BindError, check_bind

from .support import PACKAGE, PREFIX, free_port, refusal


def test_defaults_come_from_the_template_answers():
    settings = config.load()
    assert settings["PUBLIC_PORT"] == {{ cookiecutter.public_port | int }}
    assert settings["INTERNAL_PORT"] == {{ cookiecutter.internal_port | int }}
    assert settings["INTERNAL_ADDRESS"] == "127.0.0.1:{{ cookiecutter.internal_port | int }}"
    assert settings["HARDEN"] is {{ "True" if cookiecutter.harden is sameas true else "False" }}


def test_environment_overrides_with_the_prefix(monkeypatch):
    monkeypatch.setenv(f"{PREFIX}_HARDEN", "false")
    monkeypatch.setenv(f"{PREFIX}_INTERNAL_TIMEOUT", "2")
    monkeypatch.setenv(f"{PREFIX}_INTERNAL_TOKEN", "1234567890" * 4)
    settings = config.load()
    assert settings["HARDEN"] is False
    assert settings["INTERNAL_TIMEOUT"] == 2.0
    # A token that happens to look like a number stays the text it was.
    assert settings["INTERNAL_TOKEN"] == "1234567890" * 4


BAD_VALUES = [
    ("HARDEN", "yes"),
    ("INTERNAL_PORT", "eighty"),
    ("INTERNAL_PORT", "70000"),
    ("WORKERS", "-1"),
    ("WORKERS", "0"),
    ("WORKERS", "100000"),
    ("WORKERS", "1e3"),
    ("THREADS", "0"),
    ("THREADS", "NaN"),
    ("KEEPALIVE", "-5"),
    ("KEEPALIVE", "1e300"),
    # 20 workers of 4 threads: 80 connections, more than 64 - 4.
    ("WORKERS", "20"),
    ("INTERNAL_READ_TIMEOUT", "NaN"),
    ("INTERNAL_IDLE_TIMEOUT", "Infinity"),
    ("INTERNAL_IDLE_TIMEOUT", "1e300"),
    ("INTERNAL_TIMEOUT", "NaN"),
    ("INTERNAL_CONNECT_TIMEOUT", "-Infinity"),
    ("INTERNAL_AUTH_TIMEOUT", "0"),
    ("INTERNAL_MAX_MESSAGE", "0"),
    ("INTERNAL_MAX_MESSAGE", "99999999999"),
    ("INTERNAL_MAX_CONNECTIONS", "0"),
    ("MAX_CONTENT_LENGTH", "1e9"),
    ("AUTH_WINDOW", "NaN"),
    ("TOKEN_DAYS", "400"),
    ("LOG_LEVEL", "foo"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_a_bad_value_is_one_error_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(f"{PREFIX}_{name}", value)
    with pytest.raises(config.SettingsError) as caught:
        config.load()
    assert str(caught.value).startswith(f"{PREFIX}_{name}=")
    assert "\n" not in str(caught.value)


def test_every_numeric_setting_has_a_finite_range():
    numeric = {key for key, value in config.DEFAULTS.items() if type(value) in (int, float)}
    assert numeric == set(config.RANGES)
    for key, (low, high) in config.RANGES.items():
        assert low <= config.DEFAULTS[key] <= high, key


def test_the_log_level_is_taken_in_any_case(monkeypatch):
    monkeypatch.setenv(f"{PREFIX}_LOG_LEVEL", "warning")
    assert config.load()["LOG_LEVEL"] == "WARNING"


@pytest.mark.parametrize(
    ("program", "name", "value"),
    [
        ("internal", "INTERNAL_READ_TIMEOUT", "NaN"),
        ("internal", "INTERNAL_IDLE_TIMEOUT", "Infinity"),
        ("internal", "INTERNAL_MAX_MESSAGE", "0"),
        ("internal", "LOG_LEVEL", "foo"),
        ("api", "INTERNAL_TIMEOUT", "NaN"),
        ("api", "WORKERS", "0"),
        ("api", "WORKERS", "100000"),
        ("api", "THREADS", "1000"),
        ("api", "LOG_LEVEL", "foo"),
    ],
)
def test_both_processes_refuse_a_bad_value_at_start_with_one_line(spawn, program, name, value):
    module = ["-m", "gunicorn", "-c", f"python:{PACKAGE}.gunicorn_api"]
    args = ["-m", f"{PACKAGE}.internal"] if program == "internal" else module
    env = {f"{PREFIX}_{name}": value, f"{PREFIX}_PUBLIC_PORT": str(free_port())}
    env[f"{PREFIX}_INTERNAL_PORT"] = str(free_port())
    line = refusal(spawn(args, env=env))
    assert line.startswith(f"{PREFIX.lower()}-{program}: {PREFIX}_{name}="), line


def test_a_misspelt_variable_is_refused_not_ignored(monkeypatch):
    monkeypatch.setenv(f"{PREFIX}_INTERNAL_TOKNE", "x" * 40)
    with pytest.raises(config.SettingsError, match=f"{PREFIX}_INTERNAL_TOKNE is not a setting"):
        config.load()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]"])
def test_loopback_binds_are_allowed(host):
    assert check_bind("INTERNAL_BIND", host) in {"127.0.0.1", "127.0.0.53", "::1"}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "0:0:0:0:0:0:0:0", "", " ", "*"])
def test_wildcards_are_refused_even_in_several_hosts_mode(host):
    with pytest.raises(BindError, match="wildcard"):
        check_bind("INTERNAL_BIND", host, several_hosts=True)


@pytest.mark.parametrize("host", ["192.0.2.10", "2001:db8::10", "localhost"])
def test_other_addresses_need_several_hosts_mode(host):
    with pytest.raises(BindError, match=f"{PREFIX}_INTERNAL_BIND"):
        check_bind("INTERNAL_BIND", host)


def test_one_interface_address_is_allowed_in_several_hosts_mode():
    assert check_bind("INTERNAL_BIND", "192.0.2.10", several_hosts=True) == "192.0.2.10"
