"""Client of the internal service: one persistent framed-JSON connection per worker thread.

The connection is opened lazily, after gunicorn has forked, and re-opened when
it breaks. Only idempotent operations are retried on a fresh connection.
"""

import itertools
import os
import select
import socket
import threading

from . import config
from .internal.operations import idempotent_operations
from .internal.protocol import FrameSocket, ProtocolError


class InternalError(Exception):
    """The internal service could not answer; the API turns this into a JSON error."""

    status = 502
    code = "bad_gateway"

    def __init__(self, message, code=None, field=None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.field = field


class InternalUnavailable(InternalError):
    status = 503
    code = "internal_unavailable"


class InternalTimeout(InternalError):
    status = 504
    code = "internal_timeout"


class OperationFailed(InternalError):
    """The service ran the request and answered with a structured error."""


class InternalClient:
    def __init__(self, address, token, connect_timeout=1.0, timeout=5.0, max_frame=1048576):
        self.address = config.split_host_port(address)
        self.token = token
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.max_frame = max_frame
        self.retryable = idempotent_operations()
        self._local = threading.local()
        self._ids = itertools.count(1)

    @classmethod
    def from_settings(cls, settings):
        return cls(
            settings["INTERNAL_ADDRESS"],
            settings["INTERNAL_TOKEN"],
            settings["INTERNAL_CONNECT_TIMEOUT"],
            settings["INTERNAL_TIMEOUT"],
            settings["INTERNAL_MAX_FRAME"],
        )

    def call(self, op, **args):
        """Run an operation and return its result, or raise an InternalError."""
        retryable = op in self.retryable
        while True:
            frames, fresh = self._connection(probe=not retryable)
            try:
                return self._round_trip(frames, op, args)
            except (ConnectionError, ProtocolError) as exc:
                self.close()
                # A pooled connection that broke is retried once on a new one, if safe.
                if fresh or not retryable:
                    raise InternalError(
                        f"connection to the internal service broke: {exc}"
                    ) from None
                retryable = False

    def close(self):
        frames = getattr(self._local, "frames", None)
        self._local.frames = None
        if frames is not None:
            frames.sock.close()

    def _round_trip(self, frames, op, args):
        request_id = next(self._ids)
        try:
            frames.send({"id": request_id, "op": op, "args": args})
            reply = frames.receive()
        except TimeoutError:
            # A late answer would be read as the reply to the next request.
            self.close()
            raise InternalTimeout(f"the internal service did not answer {op} in time") from None
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
        )

    def _connection(self, probe):
        """This thread's connection and whether it is new; after a fork the parent's is dropped."""
        local = self._local
        frames = getattr(local, "frames", None)
        if frames is not None and local.pid == os.getpid():
            if not probe or self._alive(frames.sock):
                return frames, False
        if frames is not None:
            self.close()
        local.frames = self._connect()
        local.pid = os.getpid()
        return local.frames, True

    @staticmethod
    def _alive(sock):
        """A closed peer reads as EOF; checked before a request that cannot be retried."""
        readable, _, _ = select.select([sock], [], [], 0)
        # Nothing is owed to us between requests: readable means closed or broken.
        return not readable

    def _connect(self):
        try:
            sock = socket.create_connection(self.address, timeout=self.connect_timeout)
        except TimeoutError:
            raise InternalTimeout("could not connect to the internal service in time") from None
        except OSError as exc:
            raise InternalUnavailable(
                f"the internal service is not reachable: {exc.strerror}"
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.timeout)
        frames = FrameSocket(sock, self.max_frame)
        try:
            frames.send({"id": 0, "op": "auth", "token": self.token})
            reply = frames.receive()
        except TimeoutError:
            sock.close()
            raise InternalTimeout("the internal service did not answer the handshake") from None
        except (OSError, ProtocolError) as exc:
            sock.close()
            raise InternalUnavailable(
                f"handshake with the internal service failed: {exc}"
            ) from None
        if not reply or reply.get("ok") is not True:
            sock.close()
            raise InternalError("the internal service refused our token", code="internal_auth")
        return frames
