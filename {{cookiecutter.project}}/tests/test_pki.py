"""deploy/pki.sh: the project's CA, the server's and each API host's certificates.

Real openssl; no root needed. The certificates are read back with openssl.
"""

import datetime
import grp
import os
import shutil
import stat
import subprocess

import pytest

from .support import PKI, PREFIX, openssl, pki, pki_ok

SERVICE_GROUP = "{{ cookiecutter.service_user }}"

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None,
    reason="deploy/pki.sh needs the openssl command line tool (apt-get install openssl)",
)


def days_valid(certificate):
    dates = dict(
        line.split("=", 1)
        for line in openssl("x509", "-noout", "-startdate", "-enddate", "-in", str(certificate))
        .strip()
        .splitlines()
    )
    start, end = (
        datetime.datetime.strptime(dates[key], "%b %d %H:%M:%S %Y %Z")
        for key in ("notBefore", "notAfter")
    )
    return (end - start).days


def test_pki_makes_a_ca_that_signs_and_nothing_else(files):
    text = openssl("x509", "-noout", "-text", "-in", str(files.ours / "ca.crt"))
    assert "X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:0" in text
    assert "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign" in text
    assert "Extended Key Usage" not in text
    assert "ASN1 OID: prime256v1" in text and "ecdsa-with-SHA256" in text
    assert 1820 <= days_valid(files.ours / "ca.crt") <= 1830


def test_pki_server_certificate_names_each_address_and_serves_only(files):
    certificate = str(files.ours / "server.crt")
    text = openssl("x509", "-noout", "-text", "-in", certificate)
    assert "CA:FALSE" in text and "ASN1 OID: prime256v1" in text
    san = openssl("x509", "-noout", "-ext", "subjectAltName", "-in", certificate)
    assert "IP Address:127.0.0.1" in san and "DNS:localhost" in san
    assert "IP Address:0:0:0:0:0:0:0:1" in san
    usage = openssl("x509", "-noout", "-ext", "extendedKeyUsage", "-in", certificate)
    assert usage.split("\n", 1)[1].strip() == "TLS Web Server Authentication"
    assert 360 <= days_valid(certificate) <= 400
    assert openssl("verify", "-CAfile", str(files.ours / "ca.crt"), certificate).endswith("OK\n")


def test_pki_client_certificate_names_the_host_and_is_for_clients_only(files):
    certificate = str(files.ours / "client-api1.crt")
    assert "CN = api1" in openssl("x509", "-noout", "-subject", "-in", certificate)
    usage = openssl("x509", "-noout", "-ext", "extendedKeyUsage", "-in", certificate)
    assert usage.split("\n", 1)[1].strip() == "TLS Web Client Authentication"
    assert "subjectAltName" not in openssl("x509", "-noout", "-text", "-in", certificate)
    assert 360 <= days_valid(certificate) <= 400
    assert openssl("verify", "-CAfile", str(files.ours / "ca.crt"), certificate).endswith("OK\n")
    # Another CA's certificate does not verify against ours.
    other = subprocess.run(
        ["openssl", "verify", "-CAfile", str(files.ours / "ca.crt")]
        + [str(files.other / "client-intruder.crt")],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert other.returncode != 0


def test_pki_file_modes(files):
    directory = files.ours
    assert stat.S_IMODE(directory.stat().st_mode) == 0o750
    assert stat.S_IMODE((directory / "ca.key").stat().st_mode) == 0o600
    try:
        group = grp.getgrnam(SERVICE_GROUP).gr_gid if os.geteuid() == 0 else None
    except KeyError:
        group = None
    for name in ("server.key", "client-api1.key"):
        info = (directory / name).stat()
        if group is None:
            assert stat.S_IMODE(info.st_mode) == 0o600, name
        else:
            assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o640, group), name
    for name in ("ca.crt", "server.crt", "client-api1.crt"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o644, name
    # Nothing else is left behind (no serial file, no scratch directory).
    assert sorted(path.name for path in directory.iterdir()) == sorted(
        ["ca.key", "ca.crt", "server.key", "server.crt", "client-api1.key", "client-api1.crt"]
    )


def snapshot(directory):
    return {
        path.name: (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_mode)
        for path in directory.iterdir()
    }


def test_pki_second_run_changes_nothing_and_says_so(files):
    before = snapshot(files.ours)
    output = "".join(
        [
            pki_ok(files.ours, "ca"),
            pki_ok(files.ours, "server", "127.0.0.1", "::1", "localhost"),
            pki_ok(files.ours, "server", "::1"),
            pki_ok(files.ours, "client", "api1"),
        ]
    )
    assert "created" not in output
    for name in ("ca.key", "ca.crt", "server.key", "server.crt", "client-api1.key"):
        assert f"ok: {files.ours / name} exists" in output
    # It tells which settings to use.
    assert f"{PREFIX}_INTERNAL_TLS_CA={files.ours / 'ca.crt'}" in output
    assert f"{PREFIX}_INTERNAL_TLS_CERT={files.ours / 'client-api1.crt'}" in output
    assert f"{PREFIX}_INTERNAL_TLS_KEY={files.ours / 'client-api1.key'}" in output
    assert snapshot(files.ours) == before


def test_pki_keeps_a_server_certificate_that_does_not_fit_and_says_so(files):
    before = snapshot(files.ours)
    result = pki(files.ours, "server", "127.0.0.2")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.2" in lines[0] and "server.crt" in lines[0]
    assert snapshot(files.ours) == before


def test_pki_dry_run_writes_nothing(files, tmp_path):
    fresh = tmp_path / "fresh"
    output = pki_ok(fresh, "--dry-run", "ca")
    assert f"would create: {fresh / 'ca.key'}" in output
    assert not fresh.exists()
    before = snapshot(files.ours)
    output = pki_ok(files.ours, "--dry-run", "client", "api2")
    assert f"would create: {files.ours / 'client-api2.crt'}" in output
    assert snapshot(files.ours) == before


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["bogus"],
        ["--bogus", "ca"],
        ["ca", "extra"],
        ["server"],
        ["server", "192.0.2.300"],
        ["server", "0.0.0.0"],
        ["server", "::"],
        ["server", "fe80::1%eth0"],
        ["server", "1::2::3"],
        ["server", "no_underscores.example"],
        ["client"],
        ["client", "../evil"],
        ["client", "a", "b"],
    ],
)
def test_pki_bad_arguments_give_one_error_line_and_make_nothing(files, tmp_path, args):
    target = tmp_path / "tls"
    target.mkdir()
    for name in ("ca.key", "ca.crt"):
        shutil.copy2(files.ours / name, target / name)
    result = pki(target, *args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pki.sh: error: "), result.stderr
    assert sorted(path.name for path in target.iterdir()) == ["ca.crt", "ca.key"]


def test_pki_without_a_ca_refuses_to_sign(tmp_path):
    result = pki(tmp_path / "empty", "client", "api1")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"pki.sh: error: no CA in {tmp_path / 'empty'} (ca.key and ca.crt):"
        f" run 'pki.sh --dir {tmp_path / 'empty'} ca' first"
    ]


def test_pki_help():
    result = subprocess.run(
        ["bash", str(PKI), "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0 and "Usage: pki.sh" in result.stdout
