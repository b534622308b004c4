"""Malformed and extreme requests for the nginx front, sent exactly, and what came back.

HTTP/1.1 probes are raw bytes over TLS, so any shape can be sent (a doubled
Content-Length, a folded header, a broken chunk). HTTP/2 probes are header
lists and DATA frames written with h2, its checks on what is sent turned off.
Either way the outcome is an answer (status, headers, body) or a close: the
connection ended, or over HTTP/2 the stream reset or the connection refused
(GOAWAY), with no answer before it.

Each probe connects from a loopback address of its own (127.0.1.N): nginx's
per-address rate limit then never answers in a probe's place.

check() lists what is wrong with an outcome: the status, the JSON error
shape, the security headers of the app's own JSON error, a product name, a
Server header, a 5xx that is not allowed.
"""

import json
import socket
import time
from types import SimpleNamespace

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from support.nginx import DOMAIN, security_headers, tls_context

CLOSED = "closed"
# Headers an error may carry besides the app's security headers, for its own reason.
OWN_REASON = {"allow", "retry-after", "www-authenticate"}
NAMES = (b"nginx", b"gunicorn")


def source(number):
    """The loopback address a probe connects from: 127.0.1.N."""
    return f"127.0.1.{number % 250 + 1}"


def connect(front, *, tls=True, port=None, address=None, alpn=None, sni=DOMAIN, timeout=20):
    """A connection to the front, over TLS (SNI sni) unless tls=False, from the
    given loopback address; port: the https (or http) port of the live copy."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        if address:
            sock.bind((address, 0))
        sock.connect(("127.0.0.1", port or (front.https_port if tls else front.http_port)))
        if not tls:
            return sock
        context = tls_context(front.cert)
        if sni is None:
            # No name to send, none to check: as a client that dials an address.
            context.check_hostname = False
        if alpn:
            context.set_alpn_protocols(alpn)
        return context.wrap_socket(sock, server_hostname=sni)
    except BaseException:
        sock.close()
        raise


def answer(status, headers, body, elapsed):
    """An answer: its status, its (name, value) headers with names in lower case, its body."""
    return SimpleNamespace(status=status, headers=headers, body=body, closed=None, elapsed=elapsed)


def closed(how, elapsed, data=b""):
    """No answer: how it ended; data, anything that came before the end."""
    return SimpleNamespace(status=CLOSED, headers=[], body=data, closed=how, elapsed=elapsed)


def parse_head(head):
    """(status, [(name, value)]) of an HTTP/1.1 answer's head, as bytes."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    assert parts[0].startswith(b"HTTP/") and len(parts) >= 2, lines[0]
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower().decode("latin-1"), value.strip().decode("latin-1")))
    return int(parts[1]), headers


def exchange(front, data, *, tls=True, address=None, port=None, half_close=False, timeout=20):
    """Send data as it is over one connection (TLS unless tls=False); the
    answer, read to its Content-Length, or how the connection ended without one.

    half_close: end the client's side (a TCP FIN) after the data, as a
    client that sent a body shorter than it said and stopped.
    """
    start = time.monotonic()
    with connect(front, tls=tls, port=port, address=address, timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            socket.socket.shutdown(sock, socket.SHUT_WR)
        received = b""
        try:
            while True:
                head, found, body = received.partition(b"\r\n\r\n")
                if found:
                    status, headers = parse_head(head)
                    length = dict(headers).get("content-length")
                    if length is not None and len(body) >= int(length):
                        return answer(status, headers, body, time.monotonic() - start)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except (ConnectionResetError, TimeoutError) as error:
            return closed(type(error).__name__, time.monotonic() - start, received)
    head, found, body = received.partition(b"\r\n\r\n")
    if found:
        # Ended by the server after the body (Connection: close, no length).
        status, headers = parse_head(head)
        return answer(status, headers, body, time.monotonic() - start)
    return closed("end of connection", time.monotonic() - start, received)


def h2_exchange(front, headers, body=None, *, address=None, port=None, timeout=20):
    """One HTTP/2 stream with exactly these headers (name, value bytes) and
    body; the answer, or how the stream or connection ended without one."""
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    connection = h2.connection.H2Connection(config=config)
    start = time.monotonic()
    with connect(front, port=port, address=address, alpn=["h2"], timeout=timeout) as sock:
        assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
        connection.initiate_connection()
        connection.send_headers(1, headers, end_stream=body is None)
        pending = body or b""
        status, answer_headers, data = None, [], b""

        def send_what_the_window_allows():
            nonlocal pending
            while pending:
                size = min(
                    connection.local_flow_control_window(1),
                    connection.max_outbound_frame_size,
                    len(pending),
                )
                if size <= 0:
                    break
                connection.send_data(1, pending[:size], end_stream=size == len(pending))
                pending = pending[size:]

        send_what_the_window_allows()
        sock.sendall(connection.data_to_send())
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError) as error:
                return closed(type(error).__name__, time.monotonic() - start, data)
            if not chunk:
                return closed("end of connection", time.monotonic() - start, data)
            for event in connection.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    answer_headers = [
                        (name.decode("latin-1"), value.decode("latin-1"))
                        for name, value in event.headers
                    ]
                    status = int(dict(answer_headers).pop(":status"))
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                    connection.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                elif isinstance(event, h2.events.StreamEnded) and status is not None:
                    plain = [(name, value) for name, value in answer_headers if name[0] != ":"]
                    return answer(status, plain, data, time.monotonic() - start)
                elif isinstance(event, h2.events.StreamReset):
                    how = f"RST_STREAM {event.error_code.name}"
                    return closed(how, time.monotonic() - start, data)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    how = f"GOAWAY {event.error_code.name}"
                    return closed(how, time.monotonic() - start, data)
            try:
                send_what_the_window_allows()
            except h2.exceptions.H2Error:
                pending = b""  # the stream is over: nginx answered before the whole body
            sock.sendall(connection.data_to_send())


def check(outcome, expected, app_headers, *, allow_5xx=False):
    """What is wrong with outcome, expected to be the status (or CLOSED): a list of lines."""
    if expected == CLOSED:
        if outcome.status != CLOSED:
            return [f"expected a close, got {outcome.status}: {outcome.body[:200]!r}"]
        if outcome.body:
            return [f"closed ({outcome.closed}) after sending {outcome.body[:200]!r}"]
        return []
    if outcome.status == CLOSED:
        return [f"expected {expected}, the connection closed ({outcome.closed})"]
    problems = []
    if outcome.status != expected:
        problems.append(f"status {outcome.status}, expected {expected}")
    if outcome.status >= 500 and not allow_5xx:
        problems.append(f"a {outcome.status} that is not an upstream state")
    headers = dict(outcome.headers)
    if headers.get("content-type") != "application/json":
        problems.append(f"content-type {headers.get('content-type')!r}")
    try:
        payload = json.loads(outcome.body)
        error = payload["error"]
        if list(payload) != ["error"] or not {"code", "message"} <= set(error):
            problems.append(f"not our error shape: {payload}")
        elif not set(error) <= {"code", "message", "field"}:
            problems.append(f"more than our error's fields: {error}")
    except (ValueError, KeyError, TypeError):
        problems.append(f"not our JSON error: {outcome.body[:200]!r}")
    seen = security_headers(outcome.headers)
    for name, values in app_headers.items():
        if seen.get(name) != values:
            problems.append(f"{name}: {seen.get(name)}, the app sends {values}")
    extra = set(seen) - set(app_headers) - OWN_REASON
    if extra:
        problems.append(f"headers the app's error does not send: {sorted(extra)}")
    if "server" in headers:
        problems.append(f"a Server header: {headers['server']!r}")
    text = outcome.body.lower() + repr(outcome.headers).lower().encode()
    for name in NAMES:
        if name in text:
            problems.append(f"{name.decode()} named in the answer")
    return problems
