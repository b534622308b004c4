"""The internal service's wire protocol: the token first, MessagePack maps, size and time limits."""

import secrets
import socket
import struct
import time

import msgpack
import pytest

from {{ cookiecutter.__package }} import contract
from {{ cookiecutter.__package }}.internal import operations
from {{ cookiecutter.__package }}.protocol import MessageSocket

from .support import TOKEN, ThreadedService, rows


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
    caller = {"token": internal_service.token()}
    messages.send({"id": "abc", "op": "items.create", "args": {"title": "t"}, "caller": caller})
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
    def explode(db):
        raise RuntimeError("secret detail")

    failing = operations.Implementation(contract.service.ping, explode)
    monkeypatch.setitem(operations.IMPLEMENTATIONS, "service.ping", failing)
    messages = authenticated(internal_service)
    messages.send({"id": 1, "op": "service.ping", "args": {}})
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
    assert rows(internal_service.storage) == 0


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
            # Read whole and answered: the message was not too large (this one has no
            # caller, so the answer is that it needs a token).
            reply = messages.receive()
            assert reply["id"] == 1 and reply["error"]["code"] == "unauthorized"
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
