"""Real gunicorn with the project's worker (gunicorn_worker.py): a connection serves
request after request, and clients that send nothing, or half a request, hold
no thread. One worker with one thread, so that a single held thread would show."""

import http.client
import socket

ONE_THREAD = {"WORKERS": 1, "THREADS": 1, "BODY_TIMEOUT": 1.0}
# A request that had to wait behind a held thread would wait for ever; this is
# how long the test lets it try.
PATIENCE_S = 20


def health(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE_S)
    try:
        conn.request("GET", "/api/v1/health")
        return conn.getresponse().status
    finally:
        conn.close()


def test_one_connection_serves_request_after_request(start_api):
    port = start_api("true")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE_S)
    try:
        ends = set()
        for _ in range(20):
            conn.request("GET", "/api/v1/health")
            response = conn.getresponse()
            response.read()
            assert response.status == 200
            assert response.headers.get("Connection", "").lower() != "close"
            ends.add(conn.sock.getsockname())
        assert len(ends) == 1
    finally:
        conn.close()


def test_connections_that_send_nothing_hold_no_thread(start_api):
    port = start_api("true", **ONE_THREAD)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
    try:
        # gthread alone would give each of them its one thread for 5 s first.
        assert health(port) == 200
    finally:
        for sock in idle:
            sock.close()


def test_half_sent_requests_are_cut_off_after_the_deadline(start_api):
    port = start_api("true", **ONE_THREAD)
    stalled = []
    try:
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE_S)
            sock.sendall(b"GET /api/v1/hea")
            stalled.append(sock)
        assert health(port) == 200
        for sock in stalled:
            # Closed by gunicorn, without an answer: end of stream.
            assert sock.recv(1024) == b""
    finally:
        for sock in stalled:
            sock.close()
