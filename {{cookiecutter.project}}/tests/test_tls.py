"""Mutual TLS between the hosts: both ends use the files deploy/pki.sh makes.

Real openssl, the real server and client on loopback sockets; no root needed.
The service runs in several-hosts mode here (TRUSTED_CLIENTS set), as deployed.
"""

import select
import shutil
import socket
import ssl
import threading
import time

import msgpack
import pytest

from {{ cookiecutter.__package }} import config, contract, tls
from {{ cookiecutter.__package }}.api import create_app
from {{ cookiecutter.__package }}.internal_client import InternalClient, InternalError
from {{ cookiecutter.__package }}.protocol import MessageSocket

from .support import (
    ADMIN,
    PREFIX,
    TOKEN,
    ThreadedService,
    free_port,
    rows,
    socket_activated,
    start_internal,
    tls_files,
    wait_for_port,
)

TRUSTED = "192.0.2.10"

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None,
    reason="deploy/pki.sh needs the openssl command line tool (apt-get install openssl)",
)


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


def tls_client(address, directory, name="client-api1", ca_directory=None, api_token=None):
    """A client with DIRECTORY/NAME's certificate; its facade calls carry API_TOKEN."""
    context = tls.client_context(tls_files(directory, name, ca_directory))
    client = InternalClient(address, TOKEN, tls_context=context)
    client.caller = {"token": api_token} if api_token else None
    return client


def tls_mint(address, directory):
    """An API token from a running service over TLS, asked with the admin secret."""
    context = tls.client_context(tls_files(directory, "client-api1"))
    admin = InternalClient(address, ADMIN, tls_context=context)
    try:
        args = {"name": "tls", "scopes": ["items:read", "items:write"], "expires_days": 1}
        return admin.call(contract.tokens.create, args)["token"]
    finally:
        admin.close()


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


# --- the internal service over mutual TLS ---------------------------------------------


def test_tls_is_off_by_default():
    settings = config.load()
    assert tls.server_context(settings) is None and tls.client_context(settings) is None


def test_the_client_round_trips_over_tls_1_3(tls_service, files):
    client = tls_client(tls_service.address, files.ours, api_token=tls_service.token())
    try:
        item = client.items.create(title="over tls")
        assert client.items.get(item["id"]) == item
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
    assert rows(tls_service.storage) == 0


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
    assert rows(tls_service.storage) == 0
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
            client.call(contract.service.ping)
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
            plain_client.call(contract.service.ping)
        assert caught.value.status in (502, 503)
        with pytest.raises(InternalError) as caught:
            tls_to_plain.call(contract.service.ping)
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
            client.call(contract.service.ping)
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
        api_token = tls_service.token()
        started = time.monotonic()
        client = tls_client(tls_service.address, files.ours, api_token=api_token)
        try:
            assert client.items.list()["total"] == 0
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
    client = tls_client(service.address, files.ours, api_token=service.token())
    try:
        # items.create is not retried, so the liveness probe runs before each one.
        client.items.create(title="one")
        first = client._local.conn.sock
        client.items.create(title="two")
        assert client._local.conn.sock is first
        service.stop()
        service = ThreadedService(settings, port=service.port)
        assert client.items.create(title="three")["title"] == "three"
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


@pytest.mark.parametrize("activation", ["bind", "systemd-socket"])
def test_the_real_service_serves_over_tls(spawn, monkeypatch, files, activation):
    several_hosts_with_tls(monkeypatch, files.ours)
    if activation == "bind":
        port = free_port()
        process = start_internal(spawn, INTERNAL_PORT=port)
    else:
        process, port = socket_activated(spawn, "127.0.0.1")
    wait_for_port(port, process=process)
    api_token = tls_mint(f"127.0.0.1:{port}", files.ours)
    client = tls_client(f"127.0.0.1:{port}", files.ours, api_token=api_token)
    try:
        item = client.items.create(title=activation)
        assert client.items.get(item["id"]) == item
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
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {tls_service.token()}"
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
