"""Client of the internal service: one persistent MessagePack connection per worker thread.

The connection is opened lazily, after gunicorn has forked, and re-opened when
it breaks. Only operations the contract calls idempotent are retried on a
fresh connection. With INTERNAL_TLS_CA set it is mutual TLS (tls.py) before
the token is sent.

INTERNAL_ADDRESS may name several instances of the internal service (they
share one PostgreSQL database). Each thread's connection goes to the next
address in turn, from a random start in each process, so a worker's threads
and the workers spread over them. A connection that cannot be made moves on
to the next address, whatever the operation (nothing was sent yet); a call
whose connection broke moves on too, and only an idempotent one is sent
again there, at most once per address.

Calls name their operation by its contract object, not by a string:
client.items.get(3) (a ResourceCalls) runs contract.items.get, which
internal/items.py implements; client.call(contract.service.ping) does the same
for an operation outside a resource. A call may carry its caller: the API
token it was shown, the client's address and the request id, which the
internal service checks and records.
"""

import functools
import itertools
import logging
import os
import random
import select
import socket
import ssl
import threading
import time
import weakref

from . import config, contract, tls
from .protocol import MessageSocket, ProtocolError

log = logging.getLogger(__name__)


class InternalError(Exception):
    """The internal service could not answer; the API turns this into a JSON error."""

    status = 502
    code = "bad_gateway"

    def __init__(self, message, code=None, field=None, details=None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.field = field
        # What a refusal adds: retry_after (rate_limited), scope (insufficient_scope).
        self.details = details or {}


class InternalUnavailable(InternalError):
    status = 503
    code = "internal_unavailable"


class InternalTimeout(InternalError):
    status = 504
    code = "internal_timeout"


class OperationFailed(InternalError):
    """The service ran the request and answered with a structured error."""


def _forget_in_child(client_ref):
    client = client_ref()
    if client is not None:
        client._forget()


class InternalClient:
    def __init__(
        self,
        address,
        token,
        connect_timeout=1.0,
        timeout=5.0,
        max_message=1048576,
        tls_context=None,
    ):
        # One (host, port) per instance of the internal service.
        self.addresses = config.split_addresses(address)
        self.tls_context = tls_context
        self.token = token
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.max_message = max_message
        self._local = threading.local()
        self._ids = itertools.count(1)
        self._turns = self._new_turns()
        # A forked child (a gunicorn worker) must not share its parent's connections.
        # A weak reference, so that the hook does not keep every client alive.
        os.register_at_fork(after_in_child=functools.partial(_forget_in_child, weakref.ref(self)))
        # Who the facade's calls come from (tests, scripts): {"token": ...}, or None.
        self.caller = None
        # observe(operation name, seconds) after each call: the API's metrics.
        self.observe = _ignore
        # The typed facade: client.items.get(3), one attribute per resource of the contract.
        for unit in contract.UNITS:
            if isinstance(unit, contract.Resource):
                calls = ResourceCalls(unit, lambda: self, lambda: self.caller)
                setattr(self, unit.name, calls)

    @classmethod
    def from_settings(cls, settings, tls_context=None):
        """A client as the settings describe it. TLS_CONTEXT: one already built from
        them (startup.api builds it once); without it, it is built here."""
        if tls_context is None:
            tls_context = tls.client_context(settings)
        return cls(
            settings["INTERNAL_ADDRESS"],
            settings["INTERNAL_TOKEN"],
            settings["INTERNAL_CONNECT_TIMEOUT"],
            settings["INTERNAL_TIMEOUT"],
            settings["INTERNAL_MAX_MESSAGE"],
            tls_context,
        )

    def call(self, operation, args=None, caller=None):
        """Run OPERATION (a contract.Operation) with ARGS (a dict) for CALLER (a dict:
        token, address, request), and return its result, or raise an InternalError."""
        started = time.perf_counter()
        try:
            return self._call(operation, args, caller)
        finally:
            seconds = time.perf_counter() - started
            self._local.spent = getattr(self._local, "spent", 0.0) + seconds
            self.observe(operation.name, seconds)

    def spent(self):
        """Seconds this thread has waited on the internal service since it last asked."""
        seconds = getattr(self._local, "spent", 0.0)
        self._local.spent = 0.0
        return seconds

    def _new_turns(self):
        """Where this process's threads start: the next address each, from a random one."""
        return itertools.count(random.randrange(len(self.addresses)))  # noqa: S311 - spreading, not secret

    def _call(self, operation, args, caller):
        # An idempotent call may be sent again: once more on one instance (its
        # pooled connection may have gone stale), else once on each of the others.
        retries = len(self.addresses) if operation.idempotent else 0
        message = {"op": operation.name, "args": args or {}}
        if caller:
            message["caller"] = caller
        while True:
            conn, fresh = self._connection(probe=not operation.idempotent)
            try:
                return self._round_trip(conn, message)
            except (ConnectionError, ProtocolError, ssl.SSLError) as exc:
                self.close()
                self._move_on()
                if retries == 0 or (fresh and len(self.addresses) == 1):
                    raise InternalError(
                        f"connection to the internal service broke: {exc}"
                    ) from None
                retries -= 1

    def close(self):
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.sock.close()

    def _forget(self):
        """In a new child: start without connections (the parent's stay the parent's),
        and from an address of its own."""
        self._local = threading.local()
        self._turns = self._new_turns()

    def _at(self):
        """The index of this thread's address."""
        local = self._local
        if getattr(local, "at", None) is None:
            local.at = next(self._turns) % len(self.addresses)
        return local.at

    def _move_on(self):
        """This thread's next connection goes to the next address."""
        self._local.at = (self._at() + 1) % len(self.addresses)

    def _round_trip(self, conn, message):
        request_id = message["id"] = next(self._ids)
        try:
            conn.send(message)
            reply = conn.receive()
        except TimeoutError:
            # A late answer would be read as the reply to the next request.
            self.close()
            name = message["op"]
            raise InternalTimeout(f"the internal service did not answer {name} in time") from None
        if reply is None:
            raise ConnectionResetError("closed by the internal service")
        if reply.get("id") != request_id:
            raise ProtocolError("bad_reply", "reply does not match the request id")
        if reply.get("ok") is True:
            return reply.get("result")
        error = reply.get("error") or {}
        raise OperationFailed(
            str(error.get("message", "internal service error")),
            code=str(error.get("code", "internal")),
            field=error.get("field"),
            details={key: error[key] for key in ("retry_after", "scope") if key in error},
        )

    def _connection(self, probe):
        """This thread's connection and whether it is new."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None:
            if not probe or self._alive(conn.sock):
                return conn, False
            self.close()
        local.conn = self._connect_any()
        return local.conn, True

    def _connect_any(self):
        """A connection to this thread's address, or else to the next one that takes it."""
        failed = None
        for _ in self.addresses:
            try:
                return self._connect(self.addresses[self._at()])
            except (InternalUnavailable, InternalTimeout) as exc:
                failed = exc
                self._move_on()
        raise failed

    @staticmethod
    def _alive(sock):
        """A closed peer reads as EOF; checked before a request that cannot be retried."""
        is_tls = isinstance(sock, ssl.SSLSocket)
        if is_tls and sock.pending():
            # Decrypted data that no request asked for: the stream is out of step.
            return False
        readable, _, _ = select.select([sock], [], [], 0)
        # Nothing is owed to us between requests: readable means closed or broken...
        if not readable:
            return True
        if not is_tls:
            return False
        # ...but TLS may also send records that carry no data (a session ticket, a key
        # update). Read without waiting: if OpenSSL consumed them and wants more, all is well.
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            sock.recv(1)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return True
        except OSError:
            return False
        finally:
            sock.settimeout(timeout)
        # Data or the end of the stream.
        return False

    def _tls_failed(self, exc, address):
        """A TLS error while connecting: logged in full, reported as a bad gateway."""
        where = config.join_host_port(*address)
        log.error("TLS with the internal service at %s failed: %s", where, tls.error_text(exc))
        return InternalError(
            "the TLS handshake with the internal service failed", code="internal_tls"
        )

    def _start_tls(self, sock, address):
        """Our side of the handshake, within the connect timeout.

        check_hostname makes the server's certificate name the host we dial: an
        IP address in INTERNAL_ADDRESS must be one of its IP entries.
        """
        try:
            return self.tls_context.wrap_socket(sock, server_hostname=address[0])
        except TimeoutError:
            sock.close()
            where = config.join_host_port(*address)
            log.error("TLS with the internal service at %s failed: timed out", where)
            raise InternalTimeout(
                "the internal service did not complete the TLS handshake in time"
            ) from None
        except ssl.SSLError as exc:
            sock.close()
            raise self._tls_failed(exc, address) from None
        except OSError as exc:
            sock.close()
            raise InternalUnavailable(
                f"the internal service is not reachable: {tls.error_text(exc)}"
            ) from None

    def _connect(self, address):
        try:
            sock = socket.create_connection(address, timeout=self.connect_timeout)
        except TimeoutError:
            raise InternalTimeout("could not connect to the internal service in time") from None
        except OSError as exc:
            raise InternalUnavailable(
                f"the internal service is not reachable: {exc.strerror}"
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls_context is not None:
            sock = self._start_tls(sock, address)
        # INTERNAL_MAX_MESSAGE guards the service against its clients; an answer
        # may be longer than any request (a page of long items).
        longest = max(self.max_message, contract.longest_reply())
        conn = MessageSocket(sock, longest, timeout=self.timeout)
        self._authenticate(conn, address)
        return conn

    def _authenticate(self, conn, address):
        """Send the token as the first message; close and raise unless it is accepted."""
        try:
            conn.send({"id": 0, "op": "auth", "token": self.token})
            reply = conn.receive()
        except TimeoutError:
            conn.sock.close()
            raise InternalTimeout("the internal service did not answer the handshake") from None
        except ssl.SSLError as exc:
            # In TLS 1.3 the server judges our certificate after our side of the
            # handshake is done: a refusal arrives with the first read.
            conn.sock.close()
            raise self._tls_failed(exc, address) from None
        except (OSError, ProtocolError) as exc:
            conn.sock.close()
            raise InternalUnavailable(
                f"handshake with the internal service failed: {exc}"
            ) from None
        if reply is None:
            conn.sock.close()
            raise InternalError(
                "the internal service closed the connection without answering;"
                " are both sides set for TLS (INTERNAL_TLS_*) alike?"
            )
        if reply.get("ok") is not True:
            conn.sock.close()
            raise InternalError("the internal service refused our token", code="internal_auth")


class ResourceCalls:
    """The typed calls of one contract.Resource: create, get, list, update, delete.

    CLIENT is a function that returns the InternalClient to call through, and
    CALLER one that returns who is calling (or None): the API gives ones that
    find its app's client and the request's token (api/resource.py).
    """

    def __init__(self, resource, client, caller=None):
        self.resource = resource
        self._client = client
        self._caller = caller or _nobody

    def _call(self, operation, args):
        return self._client().call(operation, args, self._caller())

    def create(self, **fields):
        return self._call(self.resource.create, fields)

    def get(self, id):
        return self._call(self.resource.get, {"id": id})

    def list(self, limit=20, offset=0):
        return self._call(self.resource.list, {"limit": limit, "offset": offset})

    def update(self, id, **fields):
        return self._call(self.resource.update, {"id": id, **fields})

    def delete(self, id):
        return self._call(self.resource.delete, {"id": id})


def _nobody():
    return None


def _ignore(*args):
    return None
