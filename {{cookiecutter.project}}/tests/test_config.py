"""Settings come from prefixed environment variables, typed, with one clear line per mistake."""

import pytest

from {{ cookiecutter.__package }} import config
from {{ cookiecutter.__package }}.bindcheck import BindError, check_bind

from .support import PREFIX


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


@pytest.mark.parametrize(
    ("name", "value"),
    [("HARDEN", "yes"), ("INTERNAL_PORT", "eighty"), ("INTERNAL_PORT", "70000"), ("WORKERS", "-1")],
)
def test_a_bad_value_is_one_error_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(f"{PREFIX}_{name}", value)
    with pytest.raises(config.SettingsError) as caught:
        config.load()
    assert str(caught.value).startswith(f"{PREFIX}_{name}=")
    assert "\n" not in str(caught.value)


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
