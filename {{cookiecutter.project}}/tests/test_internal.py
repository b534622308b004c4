"""The internal service: operations, the MessagePack protocol, the token, limits and durability."""

import os
import secrets
import signal
import socket
import struct
import time

import msgpack
import pytest

from {{ cookiecutter.__package }}.internal import operations
from {{ cookiecutter.__package }}.internal.operations import OPERATIONS, OperationError
from {{ cookiecutter.__package }}.internal.protocol import MessageSocket
from {{ cookiecutter.__package }}.internal.storage import Storage
from {{ cookiecutter.__package }}.internal_client import InternalClient

from .conftest import PREFIX, TOKEN, ThreadedService, free_port, refusal, wait_for_port

# --- operations, called directly -------------------------------------------------


@pytest.fixture
def storage(tmp_path):
    store = Storage(tmp_path / "ops")
    yield store
    store.close()


def run(storage, name, **args):
    return OPERATIONS[name](storage, args)


def test_operations_are_registered_by_name():
    assert {
        "service.ping",
        "items.create",
        "items.get",
        "items.list",
        "items.update",
        "items.delete",
    } <= set(OPERATIONS)
    assert operations.idempotent_operations() >= {"items.get", "items.list"}
    assert "items.create" not in operations.idempotent_operations()


def test_operations_work_without_any_transport(storage):
    item = run(storage, "items.create", title="a", body="b")
    assert run(storage, "items.get", id=item["id"]) == item
    assert run(storage, "items.update", id=item["id"], title="c")["title"] == "c"
    assert run(storage, "items.list")["total"] == 1
    assert run(storage, "items.delete", id=item["id"]) == {"deleted": item["id"]}
    with pytest.raises(OperationError) as caught:
        run(storage, "items.get", id=item["id"])
    assert caught.value.code == "not_found"


@pytest.mark.parametrize(
    ("name", "args", "code"),
    [
        ("items.create", {"title": ""}, "invalid"),
        ("items.create", {"title": "x" * 201}, "invalid"),
        ("items.create", {"title": "x", "body": 5}, "invalid"),
        ("items.get", {"id": "1"}, "invalid"),
        ("items.get", {"id": True}, "invalid"),
        ("items.list", {"limit": 1000}, "invalid"),
        ("items.get", {}, "invalid_arguments"),
        ("items.get", {"id": 1, "extra": 2}, "invalid_arguments"),
    ],
)
def test_operations_validate_their_arguments(storage, name, args, code):
    with pytest.raises(OperationError) as caught:
        run(storage, name, **args)
    assert caught.value.code == code


# --- the wire protocol ----------------------------------------------------------


def connect(service):
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=5)
    return MessageSocket(sock, 1 << 20)


def authenticated(service, token=TOKEN):
    messages = connect(service)
    messages.send({"id": 0, "op": "auth", "token": token})
    assert messages.receive()["ok"] is True
    return messages


def assert_refused_and_closed(messages, code):
    reply = messages.receive()
    assert reply["ok"] is False and reply["error"]["code"] == code
    assert messages.receive() is None
    messages.sock.close()


def test_request_id_is_echoed_and_results_are_structured(internal_service):
    messages = authenticated(internal_service)
    messages.send({"id": "abc", "op": "items.create", "args": {"title": "t"}})
    reply = messages.receive()
    assert reply["id"] == "abc" and reply["ok"] is True and reply["result"]["title"] == "t"
    messages.send({"id": 7, "op": "no.such", "args": {}})
    assert messages.receive() == {
        "id": 7,
        "ok": False,
        "error": {"code": "unknown_operation", "message": "no operation named 'no.such'"},
    }
    messages.sock.close()


def test_failing_operation_returns_an_error_value_not_a_traceback(internal_service, monkeypatch):
    def explode(storage):
        raise RuntimeError("secret detail")

    monkeypatch.setitem(OPERATIONS, "test.explode", operations.Operation("x", explode, False))
    messages = authenticated(internal_service)
    messages.send({"id": 1, "op": "test.explode", "args": {}})
    reply = messages.receive()
    assert reply["error"] == {"code": "internal", "message": "internal error"}
    messages.sock.close()


@pytest.mark.parametrize(
    "hello",
    [
        {"id": 0, "op": "auth"},
        {"id": 0, "op": "auth", "token": "wrong"},
        {"id": 0, "op": "auth", "token": secrets.token_urlsafe(32)},
        {"id": 0, "op": "auth", "token": 12345},
        {"id": 0, "op": "items.list", "args": {}},
    ],
    ids=["no-token", "wrong-token", "other-project-token", "not-a-string", "request-first"],
)
def test_connections_without_the_token_are_refused(internal_service, hello):
    messages = connect(internal_service)
    messages.send(hello)
    assert_refused_and_closed(messages, "unauthorized")


def test_nothing_is_processed_before_authentication(internal_service):
    messages = connect(internal_service)
    messages.send({"id": 1, "op": "items.create", "args": {"title": "sneaky"}})
    assert_refused_and_closed(messages, "unauthorized")
    assert internal_service.storage.list(10, 0)[1] == 0


def create_head(title_header):
    """An items.create message up to its title, which TITLE_HEADER starts
    (a MessagePack string or array header)."""
    head = b"".join(msgpack.packb(part) for part in ("id", 1, "op", "items.create", "args"))
    return b"\x83" + head + b"\x81" + msgpack.packb("title") + title_header


def create_message(size, title_header, filler):
    """The first SIZE bytes of that message, the title being FILLER over and over."""
    return (create_head(title_header) + filler * size)[:size]


@pytest.mark.parametrize("over", [0, 1], ids=["at-the-limit", "one-byte-past"])
@pytest.mark.parametrize("limit", [200, None], ids=["200-bytes-in-one-read", "default-limit"])
def test_the_size_limit_is_exact(settings, limit, over):
    limit = limit or settings["INTERNAL_MAX_MESSAGE"]
    service = ThreadedService({**settings, "INTERNAL_MAX_MESSAGE": limit})
    try:
        messages = authenticated(service)
        # A string header of 5 bytes, then exactly enough characters to end LIMIT + OVER bytes.
        length = limit + over - len(create_head(b"")) - 5
        messages.sock.sendall(
            create_message(limit + over, b"\xdb" + struct.pack(">I", length), b"x")
        )
        if over:
            assert_refused_and_closed(messages, "message_too_large")
        else:
            # Read whole and run: created, or refused by the operation for a title too long.
            reply = messages.receive()
            assert reply["id"] == 1 and (reply["ok"] or reply["error"]["code"] == "invalid")
            messages.sock.close()
    finally:
        service.stop()


@pytest.mark.parametrize(
    ("title_header", "filler"),
    [(b"\xdb" + struct.pack(">I", 2**31), b"x"), (b"\xdd" + struct.pack(">I", 2**20), b"\xa1x")],
    ids=["one-2-GiB-string", "a-million-short-strings"],
)
def test_a_message_past_the_size_limit_is_refused_at_the_limit(
    settings, internal_service, title_header, filler
):
    # msgpack's own buffer limit alone would let the short strings through; the
    # service counts the message's bytes and stops one byte past the limit.
    limit = settings["INTERNAL_MAX_MESSAGE"]
    messages = authenticated(internal_service)
    messages.sock.sendall(create_message(limit + 1, title_header, filler))
    assert_refused_and_closed(messages, "message_too_large")


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb("text"),
        b"\x91" * 5000 + b"\xc0",
        b"\xd4\x05\x00",
        b"\x81\xd4\x05\x00\x01",
    ],
    ids=["never-used-byte", "array", "string", "nested-too-deep", "extension", "extension-key"],
)
def test_messages_that_are_not_plain_maps_are_refused(internal_service, payload):
    messages = authenticated(internal_service)
    messages.sock.sendall(payload)
    assert_refused_and_closed(messages, "bad_message")


def test_a_slow_client_is_cut_off_after_the_read_timeout(settings, internal_service):
    messages = connect(internal_service)
    started = time.monotonic()
    messages.sock.sendall(msgpack.packb({"id": 0, "op": "auth", "token": TOKEN})[:3])
    messages.sock.settimeout(settings["INTERNAL_READ_TIMEOUT"] * 10)
    assert messages.sock.recv(1) == b""
    assert time.monotonic() - started >= settings["INTERNAL_READ_TIMEOUT"] * 0.9
    messages.sock.close()


def test_a_client_dribbling_bytes_is_cut_off_too(settings, internal_service):
    messages = authenticated(internal_service)
    frame = msgpack.packb({"id": 1, "op": "items.list", "args": {}})
    started = time.monotonic()
    limit = settings["INTERNAL_READ_TIMEOUT"] * 10
    closed = False
    for byte in frame[:-1]:
        try:
            messages.sock.sendall(bytes([byte]))
        except OSError:
            closed = True
            break
        time.sleep(settings["INTERNAL_READ_TIMEOUT"] / 4)
        if time.monotonic() - started > limit:
            break
    if not closed:
        messages.sock.settimeout(limit)
        assert messages.sock.recv(1) == b""
    assert time.monotonic() - started < limit
    messages.sock.close()


# --- the client -----------------------------------------------------------------


def test_the_longest_page_of_items_reaches_the_client(internal_service):
    # 100 items of the longest title and body, every character 4 bytes of UTF-8:
    # an answer of about 4 MB, past the 1 MiB that any request may take.
    client = InternalClient(internal_service.address, TOKEN)
    try:
        title, body = "\U0001f512" * operations.TITLE_MAX, "\U0001f511" * operations.BODY_MAX
        for _ in range(operations.LIMIT_MAX):
            client.call("items.create", title=title, body=body)
        page = client.call("items.list", limit=operations.LIMIT_MAX)
        assert len(page["items"]) == operations.LIMIT_MAX
        assert {(item["title"], item["body"]) for item in page["items"]} == {(title, body)}
    finally:
        client.close()


def test_a_forked_child_opens_a_connection_of_its_own(internal_service):
    client = InternalClient(internal_service.address, TOKEN)
    try:
        client.call("service.ping")
        parents = client._local.conn
        pid = os.fork()
        if pid == 0:
            # The child: it must not write into the parent's stream.
            code = 1
            try:
                if getattr(client._local, "conn", None) is None:
                    client.call("service.ping")
                    code = 0 if client._local.conn is not parents else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's connection is still its own, in step.
        assert client._local.conn is parents
        assert client.call("service.ping") == {"status": "ok"}
    finally:
        client.close()


def test_client_keeps_one_connection_and_reconnects_after_a_restart(settings, tmp_path):
    service = ThreadedService(settings)
    client = InternalClient(service.address, TOKEN)
    try:
        item = client.call("items.create", title="kept")
        first = client._local.conn.sock
        assert client.call("items.get", id=item["id"]) == item
        assert client._local.conn.sock is first
        service.stop()
        service = ThreadedService(settings, port=service.port)
        # The old connection is dead: a read is retried, a write checks before sending.
        assert client.call("items.get", id=item["id"]) == item
        assert client.call("items.create", title="after")["title"] == "after"
    finally:
        client.close()
        service.stop()


# --- start-up checks, on the real entry point -------------------------------------


def start_internal(spawn, **env):
    full = {f"{PREFIX}_{key}": str(value) for key, value in env.items()}
    return spawn(["-m", "{{ cookiecutter.__package }}.internal"], env=full)


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "[::]", "", "*", "0"])
def test_internal_service_refuses_a_wildcard_bind(spawn, bind):
    line = refusal(start_internal(spawn, INTERNAL_BIND=bind, INTERNAL_PORT=free_port()))
    assert f"{PREFIX}_INTERNAL_BIND" in line and "wildcard" in line


def test_internal_service_refuses_a_public_address_on_one_host(spawn):
    line = refusal(
        start_internal(
            spawn, INTERNAL_BIND="192.0.2.10", INTERNAL_PORT=free_port(), TRUSTED_CLIENTS=""
        )
    )
    assert f"{PREFIX}_INTERNAL_BIND" in line and "loopback" in line


@pytest.mark.parametrize("token", ["", "short-token"])
def test_internal_service_refuses_a_missing_or_short_token(spawn, token):
    line = refusal(start_internal(spawn, INTERNAL_TOKEN=token, INTERNAL_PORT=free_port()))
    assert f"{PREFIX}_INTERNAL_TOKEN" in line


def test_internal_service_refuses_a_badly_typed_setting(spawn):
    line = refusal(start_internal(spawn, INTERNAL_PORT="eighty"))
    assert f"{PREFIX}_INTERNAL_PORT" in line


def test_an_acknowledged_write_survives_a_crash(spawn):
    port = free_port()
    process = start_internal(spawn, INTERNAL_PORT=port)
    wait_for_port(port, process=process)
    client = InternalClient(f"127.0.0.1:{port}", TOKEN)
    item = client.call("items.create", title="durable", body="x" * 1000)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    client.close()

    process = start_internal(spawn, INTERNAL_PORT=port)
    wait_for_port(port, process=process)
    try:
        assert client.call("items.get", id=item["id"]) == item
    finally:
        client.close()
