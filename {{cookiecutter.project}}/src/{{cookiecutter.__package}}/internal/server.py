"""Transport of the internal service: a thread per connection speaking MessagePack (../protocol.py).

With TLS on (tls.py), each connection first completes a TLS 1.3 handshake
with a client certificate of the project CA, within the read timeout, or it is
closed. Then, TLS or not, the first message must authenticate with a
secret, or the connection is closed without anything else being read: the
shared INTERNAL_TOKEN makes it an API connection, ADMIN_TOKEN an admin one
(runner.py and access.py decide what each may run). Each later message is
one request:
{"id": ..., "op": "items.get", "args": {...}, "caller": {"token": ..., "address": ...,
"request": ...}}, answered with
{"id": ..., "ok": true, "result": ...} or {"id": ..., "ok": false, "error": {...}}.
"""

import hmac
import logging
import os
import socket
import socketserver
import ssl

from .. import tls
from ..protocol import MessageSocket, ProtocolError
from .access import Gate
from .connections import AUTH_MAX, AcceptPause, Slots
from .operations import OperationError
from .runner import Runner

log = logging.getLogger(__name__)

# systemd passes sockets from file descriptor 3 on (sd_listen_fds).
SD_LISTEN_FDS_START = 3


def inherited_socket():
    """The listening socket systemd handed us (socket activation), if any."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    if int(os.environ.get("LISTEN_FDS", "0")) < 1:
        return None
    return socket.socket(fileno=SD_LISTEN_FDS_START)


class Handler(socketserver.BaseRequestHandler):
    def finish(self):
        self.server.slots.release(self.request)
        if isinstance(self.request, ssl.SSLSocket):
            # socketserver closes the socket it accepted, which wrap_socket has
            # emptied: the TLS socket holding the connection is closed here.
            self.request.close()

    def handle(self):
        server = self.server
        self.peer = self.client_address[0]
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if server.tls is not None and not self._start_tls():
            return
        # Until it has shown a secret: one small message, within the auth deadline.
        deadline = server.auth_timeout
        messages = MessageSocket(
            self.request, AUTH_MAX, deadline, deadline, widest=server.max_message
        )
        try:
            role = self._authenticate(messages)
            if role is None:
                return
            server.slots.authenticated(self.request)
            messages.limits(server.max_message, server.idle_timeout, server.read_timeout)
            receive, send, dispatch = messages.receive, messages.send, server.dispatch
            while (request := receive()) is not None:
                send(dispatch(request, role, self.client_address[0]))
        except ProtocolError as exc:
            self._refuse(messages, None, exc.code, exc.message)
        except (TimeoutError, OSError):
            # Idle, too slow or gone: just drop the connection.
            pass

    def _start_tls(self):
        """The server side of the handshake, in this connection's own thread; False if it failed."""
        plain = self.request
        # A client that never finishes the handshake is cut off at the auth deadline.
        plain.settimeout(self.server.auth_timeout)
        try:
            conn = self.server.tls.wrap_socket(
                plain, server_side=True, do_handshake_on_connect=False
            )
        except OSError as exc:
            log.warning("TLS handshake with %s failed: %s", self.peer, tls.error_text(exc))
            return False
        self.server.slots.replace(plain, conn)
        self.request = conn
        try:
            conn.do_handshake()
        except (OSError, ValueError) as exc:
            log.warning("TLS handshake with %s failed: %s", self.peer, tls.error_text(exc))
            return False
        self.peer = f"{self.peer} (certificate {tls.common_name(conn.getpeercert())})"
        return True

    def _authenticate(self, messages):
        """The connection's role, from the secret in its first message; None if refused."""
        hello = messages.receive()
        if hello is None:
            return None
        role = self.server.role_of(hello.get("token")) if hello.get("op") == "auth" else None
        if role is not None:
            messages.send({"id": hello.get("id"), "ok": True, "result": {"authenticated": True}})
            return role
        log.warning("refused a connection from %s: bad or missing token", self.peer)
        self._refuse(messages, hello.get("id"), "unauthorized", "bad or missing token")
        return None

    @staticmethod
    def _refuse(messages, request_id, code, message):
        try:
            messages.send(
                {"id": request_id, "ok": False, "error": {"code": code, "message": message}}
            )
        except OSError:
            pass


class InternalServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 is too short when every worker reconnects at once.
    request_queue_size = 128

    def __init__(self, host, port, storage, settings, tls_context=None, sock=None, recorder=None):
        """TLS_CONTEXT: the server's (startup.internal builds it), or None for plain TCP.
        RECORDER: metrics.InternalMetrics, or None for none."""
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.runner = Runner(storage, Gate(settings, recorder), settings, recorder)
        # Secret -> the role it gives a connection. An empty ADMIN_TOKEN gives none.
        self.secrets = [(settings["INTERNAL_TOKEN"].encode(), "api")]
        if settings["ADMIN_TOKEN"]:
            self.secrets.append((settings["ADMIN_TOKEN"].encode(), "admin"))
        self.max_message = settings["INTERNAL_MAX_MESSAGE"]
        self.idle_timeout = settings["INTERNAL_IDLE_TIMEOUT"]
        self.read_timeout = settings["INTERNAL_READ_TIMEOUT"]
        self.auth_timeout = settings["INTERNAL_AUTH_TIMEOUT"]
        self.tls = tls_context
        self.slots = Slots(settings["INTERNAL_MAX_CONNECTIONS"])
        self._accept_pause = AcceptPause()
        super().__init__((host, port), Handler, bind_and_activate=sock is None)
        if sock is not None:
            self.socket.close()
            self.socket = sock

    def get_request(self):
        try:
            accepted = super().get_request()
        except OSError as exc:
            # socketserver drops the error and tries again at once: wait first.
            self._accept_pause.failed(exc)
            raise
        self._accept_pause.succeeded()
        return accepted

    def process_request(self, request, client_address):
        """A thread for the connection if it gets a slot; else closed here, at once."""
        if not self.slots.admit(request):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def server_close(self):
        """Also end the open connections and the token-use writer, so that nothing
        works on the store once it is closed."""
        super().server_close()
        self.slots.cut_all()
        self.runner.last_use.stop()

    def role_of(self, token):
        """The role TOKEN opens a connection for, or None. Every secret is compared,
        in constant time, so the time taken does not tell which one came close."""
        if not isinstance(token, str):
            return None
        given = token.encode()
        found = None
        for secret, role in self.secrets:
            if hmac.compare_digest(given, secret):
                found = role
        return found

    def dispatch(self, request, role, peer=""):
        """Run one request and return the reply; never raises for the caller's mistakes."""
        request_id = request.get("id")
        name = request.get("op")
        try:
            caller = _caller(request.get("caller"))
            if role == "admin":
                # The admin command's own address is the connection's: nothing to take its word for.
                caller["address"] = peer
            result = self.runner.run(name, request.get("args", {}), caller, role)
            return {"id": request_id, "ok": True, "result": result}
        except OperationError as exc:
            return {"id": request_id, "ok": False, "error": exc.as_dict()}
        except Exception:
            log.exception("operation %s failed", name)
            return {
                "id": request_id,
                "ok": False,
                "error": {"code": "internal", "message": "internal error"},
            }


# What a caller may tell about itself, and the longest of each.
CALLER_FIELDS = {"token": 256, "address": 64, "request": 128, "key": 128}


def _caller(value):
    """The caller part of a request, with only known fields of bounded text kept."""
    if not isinstance(value, dict):
        return {}
    return {
        key: value[key]
        for key, longest in CALLER_FIELDS.items()
        if isinstance(value.get(key), str) and len(value[key]) <= longest
    }
