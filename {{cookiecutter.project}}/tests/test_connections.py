"""Connections to the internal service: bounded in number, in bytes and in time before
they prove themselves, so that a local peer without the secret cannot lock the API out."""

import resource
import socket
import struct
import time

import msgpack
import psutil
import pytest

from {{ cookiecutter.__package }}.internal.connections import AUTH_MAX

from .support import (
    PACKAGE,
    PREFIX,
    TOKEN,
    ThreadedService,
    client_for,
    free_port,
    ready_store,
    wait_for_port,
)

HELLO = msgpack.packb({"id": 0, "op": "auth", "token": TOKEN})


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def closed_within(sock, seconds):
    """Whether the service closes SOCK within SECONDS (reading nothing from it)."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.fixture
def small(settings):
    """A service with 8 slots (2 for connections still unauthenticated) and a 0.5 s deadline."""
    service = ThreadedService(
        {**settings, "INTERNAL_MAX_CONNECTIONS": 8, "INTERNAL_AUTH_TIMEOUT": 0.5}
    )
    yield service
    service.stop()


def test_a_silent_peer_is_closed_at_the_auth_deadline(small):
    with connect(small.port) as silent:
        started = time.monotonic()
        assert closed_within(silent, 5)
        assert 0.4 < time.monotonic() - started < 2.5


def test_a_first_message_past_the_small_limit_is_refused_at_once(small):
    with connect(small.port) as greedy:
        # A string header that announces a megabyte, then more than the first message may hold.
        greedy.sendall(b"\x81\xa5token\xdb" + struct.pack(">I", 1 << 20) + b"x" * AUTH_MAX)
        answer = msgpack.unpackb(greedy.recv(4096))
        assert answer["error"]["code"] == "message_too_large"
        assert closed_within(greedy, 2)


def test_unauthenticated_peers_push_out_each_other_not_the_api(small):
    api = client_for(small.address, api_token=small.token())
    try:
        assert api.items.list()["total"] == 0
        idle = [connect(small.port) for _ in range(30)]
        try:
            # All but the last two were pushed out, oldest first; the API's connection stayed.
            assert sum(closed_within(sock, 0.2) for sock in idle[:-2]) == 28
            assert api.items.list()["total"] == 0
            # A newcomer with the secret gets in even now: it pushes out an idle peer.
            late = client_for(small.address, api_token=small.token())
            assert late.items.list()["total"] == 0
            late.close()
        finally:
            for sock in idle:
                sock.close()
    finally:
        api.close()


def test_past_every_slot_a_newcomer_is_closed_at_once(small):
    holders = [client_for(small.address, api_token=small.token()) for _ in range(8)]
    try:
        for holder in holders:
            holder.items.list()
        with connect(small.port) as newcomer:
            newcomer.sendall(HELLO)
            assert closed_within(newcomer, 1)
        assert small.server.slots.counts() == (8, 0)
    finally:
        for holder in holders:
            holder.close()


def test_out_of_descriptors_the_accept_loop_waits_instead_of_spinning(spawn):
    port = free_port()

    def few_descriptors():
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    settings = {f"{PREFIX}_INTERNAL_PORT": str(port), f"{PREFIX}_INTERNAL_MAX_CONNECTIONS": "200"}
    ready_store()
    process = spawn(["-m", f"{PACKAGE}.internal"], env=settings, preexec_fn=few_descriptors)
    wait_for_port(port, process=process)
    held = []
    try:
        for _ in range(60):
            sock = connect(port)
            sock.sendall(HELLO)
            held.append(sock)
        service = psutil.Process(process.pid)
        before = sum(service.cpu_times()[:2])
        time.sleep(3)
        spent = sum(service.cpu_times()[:2]) - before
        # A spinning accept loop would burn the 3 s; waiting costs next to nothing.
        assert spent < 0.5, spent
    finally:
        for sock in held:
            sock.close()
    # With descriptors free again, it serves.
    time.sleep(1.2)
    with connect(port) as again:
        again.sendall(HELLO)
        assert msgpack.unpackb(again.recv(4096))["ok"] is True
