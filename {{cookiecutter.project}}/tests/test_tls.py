"""Mutual TLS between the hosts: deploy/pki.sh makes the files, both ends use them.

Real openssl, the real server and client on loopback sockets; no root needed.
The service runs in several-hosts mode here (TRUSTED_CLIENTS set), as deployed.
"""

import datetime
import grp
import os
import select
import shutil
import socket
import ssl
import stat
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import msgpack
import pytest

from {{ cookiecutter.__package }} import config, tls
from {{ cookiecutter.__package }}.api import create_app
from {{ cookiecutter.__package }}.internal.protocol import MessageSocket
from {{ cookiecutter.__package }}.internal_client import InternalClient, InternalError

from .conftest import PREFIX, TOKEN, ThreadedService, free_port, refusal, wait_for_port
from .test_e2e import socket_activated

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PKI = PROJECT_ROOT / "deploy" / "pki.sh"
SERVICE_GROUP = "{{ cookiecutter.service_user }}"
TRUSTED = "192.0.2.10"

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None,
    reason="deploy/pki.sh needs the openssl command line tool (apt-get install openssl)",
)


def pki(directory, *args):
    """Run deploy/pki.sh --dir DIRECTORY ARGS; returns the completed process."""
    return subprocess.run(
        ["bash", str(PKI), "--dir", str(directory), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def pki_ok(directory, *args):
    result = pki(directory, *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return result.stdout


def openssl(*args):
    result = subprocess.run(
        ["openssl", *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Our CA with a server and a client certificate, another CA with both, a misnamed server."""
    base = tmp_path_factory.mktemp("pki")
    ours, other, misnamed = base / "tls", base / "other", base / "misnamed"
    pki_ok(ours, "ca")
    pki_ok(ours, "server", "127.0.0.1", "::1", "localhost")
    pki_ok(ours, "client", "api1")
    pki_ok(other, "ca")
    pki_ok(other, "server", "127.0.0.1")
    pki_ok(other, "client", "intruder")
    # Our CA, but a certificate for an address the client does not dial.
    misnamed.mkdir(mode=0o750)
    for name in ("ca.key", "ca.crt"):
        shutil.copy2(ours / name, misnamed / name)
    pki_ok(misnamed, "server", "127.0.0.9")
    return SimpleNamespace(ours=ours, other=other, misnamed=misnamed)


def tls_files(directory, name, ca_directory=None):
    """The three TLS settings for the pair DIRECTORY/NAME.{crt,key}."""
    return {
        "INTERNAL_TLS_CA": str((ca_directory or directory) / "ca.crt"),
        "INTERNAL_TLS_CERT": str(directory / f"{name}.crt"),
        "INTERNAL_TLS_KEY": str(directory / f"{name}.key"),
    }


def several_hosts_with_tls(monkeypatch, directory, name="server", ca_directory=None):
    monkeypatch.setenv(f"{PREFIX}_TRUSTED_CLIENTS", TRUSTED)
    for key, value in tls_files(directory, name, ca_directory).items():
        monkeypatch.setenv(f"{PREFIX}_{key}", value)


@pytest.fixture
def tls_service(monkeypatch, files):
    """The real internal server with our server certificate, in several-hosts mode."""
    several_hosts_with_tls(monkeypatch, files.ours)
    service = ThreadedService(config.load())
    yield service
    service.stop()


def tls_client(address, directory, name="client-api1", ca_directory=None):
    context = tls.client_context(tls_files(directory, name, ca_directory))
    return InternalClient(address, TOKEN, tls_context=context)


def raw_tls(port, ca, cert=None, key=None):
    """A hand-made TLS client that trusts CA and shows CERT, if any."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca)
    if cert:
        context.load_cert_chain(cert, key)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return context.wrap_socket(sock, server_hostname="127.0.0.1")


def try_token(conn, hello=None):
    """Send the auth message; the reply, or the exception that took its place."""
    messages = MessageSocket(conn, 1 << 20)
    try:
        messages.send(hello or {"id": 0, "op": "auth", "token": TOKEN})
        return messages.receive()
    except (ssl.SSLError, ConnectionError) as exc:
        return exc
    finally:
        conn.close()


def handshake_warnings(caplog, count=1, timeout=5.0):
    """The server's warnings about failed handshakes, once COUNT have been logged."""
    deadline = time.monotonic() + timeout
    while True:
        found = [
            record.getMessage()
            for record in caplog.records
            if record.levelname == "WARNING" and "TLS handshake" in record.getMessage()
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


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


# --- deploy/pki.sh ----------------------------------------------------------------


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


# --- the internal service over mutual TLS ---------------------------------------------


def test_tls_is_off_by_default():
    settings = config.load()
    assert tls.server_context(settings) is None and tls.client_context(settings) is None


def test_the_client_round_trips_over_tls_1_3(tls_service, files):
    client = tls_client(tls_service.address, files.ours)
    try:
        item = client.call("items.create", title="over tls")
        assert client.call("items.get", id=item["id"]) == item
        conn = client._local.conn.sock
        assert isinstance(conn, ssl.SSLSocket) and conn.version() == "TLSv1.3"
        assert ("commonName", "{{ cookiecutter.project }} internal service") in [
            entry[0] for entry in conn.getpeercert()["subject"]
        ]
    finally:
        client.close()


def test_a_client_without_a_certificate_is_refused(tls_service, files, caplog):
    outcome = try_token(raw_tls(tls_service.port, files.ours / "ca.crt"))
    assert not isinstance(outcome, dict), outcome
    warnings = handshake_warnings(caplog)
    assert len(warnings) == 1 and "did not return a certificate" in warnings[0]
    assert tls_service.storage.list(10, 0)[1] == 0


def test_a_client_with_another_cas_certificate_is_refused(tls_service, files, caplog):
    conn = raw_tls(
        tls_service.port,
        files.ours / "ca.crt",
        files.other / "client-intruder.crt",
        files.other / "client-intruder.key",
    )
    outcome = try_token(conn)
    assert not isinstance(outcome, dict), outcome
    warnings = handshake_warnings(caplog)
    assert len(warnings) == 1 and "certificate verify failed" in warnings[0]


@pytest.mark.parametrize(
    "hello",
    [
        {"id": 0, "op": "auth"},
        {"id": 0, "op": "auth", "token": "x" * 64},
        {"id": 0, "op": "items.create", "args": {"title": "sneaky"}},
    ],
    ids=["no-token", "wrong-token", "request-first"],
)
def test_a_valid_certificate_still_needs_the_token(tls_service, files, caplog, hello):
    ours = files.ours
    conn = raw_tls(
        tls_service.port, ours / "ca.crt", ours / "client-api1.crt", ours / "client-api1.key"
    )
    messages = MessageSocket(conn, 1 << 20)
    messages.send(hello)
    reply = messages.receive()
    assert reply["ok"] is False and reply["error"]["code"] == "unauthorized"
    assert messages.receive() is None
    conn.close()
    assert tls_service.storage.list(10, 0)[1] == 0
    assert any("CN=api1" in record.getMessage() for record in caplog.records)


def test_messages_over_tls_keep_their_limits(tls_service, files, settings):
    ours = files.ours
    conn = raw_tls(
        tls_service.port, ours / "ca.crt", ours / "client-api1.crt", ours / "client-api1.key"
    )
    messages = MessageSocket(conn, 1 << 20)
    messages.send({"id": 0, "op": "auth", "token": TOKEN})
    assert messages.receive()["ok"] is True
    # A message started but not finished is cut off after the read timeout, as in plain TCP.
    read_timeout = settings["INTERNAL_READ_TIMEOUT"]
    started = time.monotonic()
    conn.sendall(msgpack.packb({"id": 1, "op": "items.list", "args": {}})[:3])
    conn.settimeout(read_timeout * 10)
    try:
        assert conn.recv(1) == b""
    except (ssl.SSLError, ConnectionResetError):
        pass
    assert read_timeout * 0.8 <= time.monotonic() - started < read_timeout * 5
    conn.close()


def test_a_plain_tcp_client_gets_nothing(tls_service, caplog):
    with socket.create_connection(("127.0.0.1", tls_service.port), timeout=5) as conn:
        conn.sendall(msgpack.packb({"id": 0, "op": "auth", "token": TOKEN}))
        received = b""
        try:
            while chunk := conn.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
    # At most a TLS alert record (content type 21), never a message of ours.
    assert received == b"" or received[0] == 21, received
    assert b"ok" not in received
    assert len(handshake_warnings(caplog)) == 1


@pytest.mark.parametrize(
    ("server_files", "logged"),
    [("other", "certificate verify failed"), ("misnamed", "IP address mismatch")],
    ids=["server-of-another-ca", "certificate-for-another-address"],
)
def test_the_client_refuses_a_server_it_should_not_trust(
    monkeypatch, files, caplog, server_files, logged
):
    several_hosts_with_tls(monkeypatch, getattr(files, server_files))
    service = ThreadedService(config.load())
    client = tls_client(service.address, files.ours)
    try:
        with pytest.raises(InternalError) as caught:
            client.call("service.ping")
        assert (caught.value.status, caught.value.code) == (502, "internal_tls")
        assert any(logged in r.getMessage() for r in caplog.records)
    finally:
        client.close()
        service.stop()


def test_tls_on_one_side_only_fails_cleanly(tls_service, files):
    plain_client = InternalClient(tls_service.address, TOKEN)
    plain_settings = {**config.load(), **dict.fromkeys(tls_files(files.ours, "server"), "")}
    plain_service = ThreadedService(plain_settings)
    tls_to_plain = tls_client(plain_service.address, files.ours)
    try:
        # Reset or closed at the first bytes: never an answer.
        with pytest.raises(InternalError) as caught:
            plain_client.call("service.ping")
        assert caught.value.status in (502, 503)
        with pytest.raises(InternalError) as caught:
            tls_to_plain.call("service.ping")
        assert (caught.value.status, caught.value.code) == (502, "internal_tls")
    finally:
        plain_client.close()
        tls_to_plain.close()
        plain_service.stop()


def test_a_server_that_never_answers_the_handshake_is_a_timeout(files):
    # The kernel accepts the connection into the backlog; nobody ever speaks TLS.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        context = tls.client_context(tls_files(files.ours, "client-api1"))
        address = f"127.0.0.1:{port}"
        client = InternalClient(address, TOKEN, connect_timeout=0.3, tls_context=context)
        started = time.monotonic()
        with pytest.raises(InternalError) as caught:
            client.call("service.ping")
        assert (caught.value.status, caught.value.code) == (504, "internal_timeout")
        assert time.monotonic() - started < 3
        client.close()


def client_hello():
    """The first flight of a real TLS 1.3 client, made in memory."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    connection = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        connection.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("sent", ["nothing", "half-a-client-hello"])
def test_a_stalled_handshake_neither_blocks_others_nor_stays(
    tls_service, files, settings, caplog, sent
):
    read_timeout = settings["INTERNAL_READ_TIMEOUT"]
    stalled = socket.create_connection(("127.0.0.1", tls_service.port), timeout=5)
    try:
        if sent != "nothing":
            hello = client_hello()
            stalled.sendall(hello[: len(hello) // 2])
        started = time.monotonic()
        client = tls_client(tls_service.address, files.ours)
        try:
            assert client.call("items.list")["total"] == 0
        finally:
            client.close()
        # Served while the stalled handshake still holds its own thread.
        assert time.monotonic() - started < read_timeout * 0.8
        stalled.settimeout(read_timeout * 10)
        try:
            assert stalled.recv(1) == b""
        except ConnectionResetError:
            pass
        elapsed = time.monotonic() - started
        assert read_timeout * 0.8 <= elapsed < read_timeout * 5
    finally:
        stalled.close()
    warnings = handshake_warnings(caplog)
    assert len(warnings) == 1 and "timed out" in warnings[0]


def test_a_kept_tls_connection_is_reused_and_replaced_after_a_restart(monkeypatch, files):
    several_hosts_with_tls(monkeypatch, files.ours)
    settings = config.load()
    service = ThreadedService(settings)
    client = tls_client(service.address, files.ours)
    try:
        # items.create is not retried, so the liveness probe runs before each one.
        client.call("items.create", title="one")
        first = client._local.conn.sock
        client.call("items.create", title="two")
        assert client._local.conn.sock is first
        service.stop()
        service = ThreadedService(settings, port=service.port)
        assert client.call("items.create", title="three")["title"] == "three"
        assert client._local.conn.sock is not first
    finally:
        client.close()
        service.stop()


def connected_pair(files):
    """(server side, client side) of one TLS 1.3 connection with session tickets in flight."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.ours / "server.crt", files.ours / "server.key")
    assert context.num_tickets > 0
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname(), timeout=5)
    raw, _ = listener.accept()
    listener.close()
    accepted = {}

    def handshake():
        accepted["conn"] = context.wrap_socket(raw, server_side=True)

    thread = threading.Thread(target=handshake, daemon=True)
    thread.start()
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.load_verify_locations(files.ours / "ca.crt")
    client = client_context.wrap_socket(client, server_hostname="127.0.0.1")
    thread.join(10)
    return accepted["conn"], client


def test_the_probe_tells_a_record_without_data_from_a_closed_connection(files):
    server, client = connected_pair(files)
    try:
        # The tickets make the socket readable although no data is owed to the client.
        assert select.select([client], [], [], 5)[0]
        assert InternalClient._alive(client) is True
        assert InternalClient._alive(client) is True
        assert client.gettimeout() == 5
        server.sendall(b"x")
        assert select.select([client], [], [], 5)[0]
        assert InternalClient._alive(client) is False
    finally:
        server.close()
        client.close()
    server, client = connected_pair(files)
    try:
        server.close()
        assert select.select([client], [], [], 5)[0]
        assert InternalClient._alive(client) is False
    finally:
        client.close()


# --- start-up checks, on the real entry point --------------------------------------


def start_internal(spawn, **env):
    full = {f"{PREFIX}_{key}": str(value) for key, value in env.items()}
    return spawn(["-m", "{{ cookiecutter.__package }}.internal"], env=full)


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


@pytest.mark.parametrize("activation", ["bind", "systemd-socket"])
def test_the_real_service_serves_over_tls(spawn, monkeypatch, files, activation):
    several_hosts_with_tls(monkeypatch, files.ours)
    if activation == "bind":
        port = free_port()
        process = start_internal(spawn, INTERNAL_PORT=port)
    else:
        process, port = socket_activated(spawn, "127.0.0.1")
    wait_for_port(port, process=process)
    client = tls_client(f"127.0.0.1:{port}", files.ours)
    try:
        item = client.call("items.create", title=activation)
        assert client.call("items.get", id=item["id"]) == item
    finally:
        client.close()
    # A client without our CA's certificate gets nowhere with the real process either.
    outcome = try_token(raw_tls(port, files.ours / "ca.crt"))
    assert not isinstance(outcome, dict), outcome


# --- the API in front -------------------------------------------------------------


def test_the_api_works_end_to_end_over_tls(tls_service, files):
    app = create_app(
        {"INTERNAL_ADDRESS": tls_service.address, **tls_files(files.ours, "client-api1")}
    )
    try:
        client = app.test_client()
        ready = client.get("/api/v1/ready")
        assert (ready.status_code, ready.get_json()) == (200, {"status": "ready"})
        created = client.post("/api/v1/items", json={"title": "through the API"})
        assert created.status_code == 201
        item = created.get_json()
        assert client.get(f"/api/v1/items/{item['id']}").get_json() == item
        assert isinstance(app.extensions["internal_client"]._local.conn.sock, ssl.SSLSocket)
    finally:
        app.extensions["internal_client"].close()


def test_the_api_with_a_refused_certificate_answers_502(tls_service, files):
    app = create_app(
        {
            "INTERNAL_ADDRESS": tls_service.address,
            **tls_files(files.other, "client-intruder", ca_directory=files.ours),
        }
    )
    try:
        ready = app.test_client().get("/api/v1/ready")
        assert ready.status_code == 502
        assert ready.get_json()["error"]["code"] == "internal_tls"
    finally:
        app.extensions["internal_client"].close()


def test_api_refuses_several_hosts_without_tls(monkeypatch):
    """Without TLS files an API host would talk to the internal host in clear text."""
    monkeypatch.setenv(f"{PREFIX}_TRUSTED_CLIENTS", "192.0.2.10")
    with pytest.raises(SystemExit) as refused:
        create_app({"INTERNAL_ADDRESS": "192.0.2.1:8001"})
    message = str(refused.value)
    assert message.startswith(f"{PREFIX.lower()}-api: {PREFIX}_TRUSTED_CLIENTS is set")
    assert "\n" not in message
