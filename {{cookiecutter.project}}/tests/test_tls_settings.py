"""Start-up with bad TLS settings: both processes stop with one line naming the variable."""

import shutil
from types import SimpleNamespace

import pytest

from {{ cookiecutter.__package }}.api import create_app

from .support import PREFIX, free_port, openssl, refusal, start_internal, tls_files

TRUSTED = "192.0.2.10"

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None,
    reason="deploy/pki.sh needs the openssl command line tool (apt-get install openssl)",
)


def test_several_hosts_without_tls_refuse_to_start(spawn):
    line = refusal(start_internal(spawn, TRUSTED_CLIENTS=TRUSTED, INTERNAL_PORT=free_port()))
    assert f"{PREFIX}_TRUSTED_CLIENTS" in line and f"{PREFIX}_INTERNAL_TLS_CA" in line


@pytest.fixture
def bad_files(files, tmp_path):
    """Files that are wrong in one way each."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    open_key = tmp_path / "open.key"
    shutil.copy(files.ours / "server.key", open_key)
    open_key.chmod(0o644)
    encrypted_key = tmp_path / "encrypted.key"
    source = str(files.ours / "server.key")
    openssl("pkey", "-in", source, "-aes256", "-passout", "pass:x", "-out", str(encrypted_key))
    return SimpleNamespace(garbage=garbage, open_key=open_key, encrypted_key=encrypted_key)


def bad_settings(files, bad_files):
    ours = tls_files(files.ours, "server")
    return {
        "cert-missing": ({**ours, "INTERNAL_TLS_CERT": ""}, "INTERNAL_TLS_CERT"),
        "key-missing": ({**ours, "INTERNAL_TLS_KEY": ""}, "INTERNAL_TLS_KEY"),
        "ca-missing": ({**ours, "INTERNAL_TLS_CA": ""}, "INTERNAL_TLS_CERT"),
        "ca-unreadable": (
            {**ours, "INTERNAL_TLS_CA": str(files.ours / "nope.crt")},
            "INTERNAL_TLS_CA",
        ),
        "ca-is-a-leaf": (
            {**ours, "INTERNAL_TLS_CA": ours["INTERNAL_TLS_CERT"]},
            "INTERNAL_TLS_CA",
        ),
        "cert-garbage": (
            {**ours, "INTERNAL_TLS_CERT": str(bad_files.garbage)},
            "INTERNAL_TLS_CERT",
        ),
        "key-of-another-cert": (
            {**ours, "INTERNAL_TLS_KEY": str(files.ours / "client-api1.key")},
            "INTERNAL_TLS_KEY",
        ),
        "key-readable-by-all": (
            {**ours, "INTERNAL_TLS_KEY": str(bad_files.open_key)},
            "INTERNAL_TLS_KEY",
        ),
        "key-encrypted": (
            {**ours, "INTERNAL_TLS_KEY": str(bad_files.encrypted_key)},
            "INTERNAL_TLS_KEY",
        ),
    }


BAD_CASES = [
    "cert-missing",
    "key-missing",
    "ca-missing",
    "ca-unreadable",
    "ca-is-a-leaf",
    "cert-garbage",
    "key-of-another-cert",
    "key-readable-by-all",
    "key-encrypted",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_tls_files_stop_the_service_with_one_line(spawn, files, bad_files, case):
    values, culprit = bad_settings(files, bad_files)[case]
    process = start_internal(spawn, TRUSTED_CLIENTS=TRUSTED, INTERNAL_PORT=free_port(), **values)
    line = refusal(process)
    assert f"{PREFIX}_{culprit}" in line, line
    assert "Traceback" not in line


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_tls_files_stop_the_api_with_one_line(monkeypatch, files, bad_files, case):
    values, culprit = bad_settings(files, bad_files)[case]
    for key, value in values.items():
        monkeypatch.setenv(f"{PREFIX}_{key}", value)
    with pytest.raises(SystemExit) as caught:
        create_app()
    message = str(caught.value)
    assert f"{PREFIX}_{culprit}" in message and "\n" not in message


def test_api_refuses_several_hosts_without_tls(monkeypatch):
    """Without TLS files an API host would talk to the internal host in clear text."""
    monkeypatch.setenv(f"{PREFIX}_TRUSTED_CLIENTS", "192.0.2.10")
    with pytest.raises(SystemExit) as refused:
        create_app({"INTERNAL_ADDRESS": "192.0.2.1:8001"})
    message = str(refused.value)
    assert message.startswith(f"{PREFIX.lower()}-api: {PREFIX}_TRUSTED_CLIENTS is set")
    assert "\n" not in message
