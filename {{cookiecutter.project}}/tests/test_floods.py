"""A flood of connections without the secret against the real internal service process:
the API keeps answering through the connection it holds, and the service stays small."""

import contextlib
import resource
import selectors
import socket
import struct
import time

import psutil
import pytest

from {{ cookiecutter.__package }}.api import create_app

from .support import client_for, free_port, mint_over_the_wire, start_internal, wait_for_port

IDLE = 2000
HALF_SENT = 1000
# The service's resident memory, flooded (it is about 30 MB at rest).
RSS_LIMIT_MB = 80
# str32 header of a 1 MiB string, then the first 64 KiB of it.
HALF_MESSAGE = b"\x81\xa5token\xdb" + struct.pack(">I", 1 << 20) + b"x" * 65536


def room_for(count):
    """Raise the soft limit on descriptors to hold COUNT sockets, if the hard one allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 256
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"the hard limit on open files is {hard}; the flood needs {want}")
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def flood(port, count, payload=b"", within=10.0):
    """COUNT connections at once, each sending what of PAYLOAD fits without waiting.
    Connecting is not waited on one by one: when the listen queue is full the
    kernel retries the handshake a second later, for all of them together."""
    waiting = {}
    with selectors.DefaultSelector() as selector:
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            waiting[sock] = True
            selector.register(sock, selectors.EVENT_WRITE)
        held = []
        deadline = time.monotonic() + within
        while waiting and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                sock = key.fileobj
                selector.unregister(sock)
                del waiting[sock]
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    sock.close()
                    continue
                with contextlib.suppress(OSError):
                    sock.send(payload)
                held.append(sock)
    for sock in waiting:
        sock.close()
    return held


def timed_reads(client, count=20):
    """Seconds each of COUNT reads of the API took; each must be a 200."""
    spent = []
    for _ in range(count):
        started = time.monotonic()
        assert client.get("/api/v1/items").status_code == 200
        spent.append(time.monotonic() - started)
    return spent


def test_idle_and_half_sent_floods_leave_the_api_answering(spawn, capsys):
    room_for(IDLE + HALF_SENT)
    port = free_port()
    process = start_internal(spawn, INTERNAL_PORT=port)
    wait_for_port(port, process=process)
    app = create_app({"INTERNAL_ADDRESS": f"127.0.0.1:{port}"})
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {mint_over_the_wire(f'127.0.0.1:{port}')}"
    calm = timed_reads(client)
    held = []
    try:
        held += flood(port, IDLE)
        held += flood(port, HALF_SENT, HALF_MESSAGE)
        flooded = timed_reads(client)
        # A connection made now, as a restarted API worker would, gets in too.
        fresh = client_for(f"127.0.0.1:{port}", api_token=mint_over_the_wire(f"127.0.0.1:{port}"))
        assert fresh.items.list()["total"] == 0
        fresh.close()
        rss_mb = psutil.Process(process.pid).memory_info().rss / 2**20
        threads = psutil.Process(process.pid).num_threads()
    finally:
        for sock in held:
            sock.close()
        app.extensions["internal_client"].close()
    with capsys.disabled():
        print(
            f"\nflood: {len(held)} connections held; the API's reads took at most "
            f"{max(calm) * 1000:.1f} ms calm and {max(flooded) * 1000:.1f} ms flooded; "
            f"the service: {rss_mb:.1f} MB resident, {threads} threads"
        )
    assert rss_mb < RSS_LIMIT_MB
    # Its threads are bounded by its slots (64 by default), whatever the flood.
    assert threads < 100
