"""The wire format between the API and the internal service: a stream of MessagePack maps.

msgpack's streaming Unpacker finds where each message ends and decodes it in
C, so there is no framing code of our own. What is ours is the limit: a
message may not run past max_message bytes. The Unpacker's own buffer limit
is not enough for that, because it drops the bytes of each finished string
or number even while the message holding them goes on. Every message must be
a map; extension types (MessagePack's escape hatch for custom objects) are
refused.
"""

import socket
import ssl
import struct
import time

import msgpack


class ProtocolError(Exception):
    """The peer broke the message format; the connection cannot be trusted any more."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def _refuse_extension(code, data):
    raise ValueError(f"extension type {code} is not accepted")


def _timeval(seconds):
    """SO_RCVTIMEO/SO_SNDTIMEO value; 0 would mean "wait forever", so at least 1 µs."""
    micros = max(1, round(seconds * 1_000_000))
    return struct.pack("ll", micros // 1_000_000, micros % 1_000_000)


class MessageSocket:
    """Reads and writes whole messages on one connected socket.

    With idle_timeout and read_timeout set (the server), waiting for a message
    may take idle_timeout seconds, but once its first byte has arrived the rest
    must follow within read_timeout, so a slow client cannot hold a thread.
    Without them (the client), `timeout` bounds every read and write.

    On a plain TCP socket the timeouts are the kernel's (SO_RCVTIMEO and
    SO_SNDTIMEO on a blocking socket): a message then costs one recv and one
    send, where Python's socket timeouts add a poll() before each. A TLS
    socket keeps Python's timeouts, which OpenSSL needs.

    The server starts a connection with tight limits (limits()) and widens
    them once the peer has shown its secret: it reads no more than the limit
    allows, so an unauthenticated peer never makes it buffer more than that.
    """

    def __init__(
        self, sock, max_message, idle_timeout=None, read_timeout=None, timeout=None, widest=None
    ):
        """WIDEST: the largest max_message limits() may set later (default max_message)."""
        self.sock = sock
        self.max_message = max_message
        self.idle_timeout = idle_timeout if idle_timeout is not None else timeout
        self.read_timeout = read_timeout
        self._unpacker = msgpack.Unpacker(
            max_buffer_size=max(max_message, widest or 0), ext_hook=_refuse_extension
        )
        # A Packer reuses its buffer; it is not shared between threads (one per connection).
        self._pack = msgpack.Packer().pack
        # Bytes fed in, and where the last whole message ended: more fed than
        # that means a message has started.
        self._fed = 0
        self._boundary = 0
        self._kernel = not isinstance(sock, ssl.SSLSocket)
        self._timeout = None
        if self._kernel:
            sock.settimeout(None)
            send_timeout = read_timeout if read_timeout is not None else timeout
            if send_timeout is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(send_timeout))
        else:
            self._timeout = sock.gettimeout()
            if timeout is not None:
                self._set_timeout(timeout)

    def limits(self, max_message, idle_timeout, read_timeout):
        """New limits from the next message on: size, wait for it, time to finish it."""
        self.max_message = max_message
        self.idle_timeout = idle_timeout
        self.read_timeout = read_timeout
        if self._kernel:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(read_timeout))

    def send(self, message):
        try:
            self.sock.sendall(self._pack(message))
        except BlockingIOError:
            raise TimeoutError("message not sent in time") from None

    def _set_timeout(self, seconds):
        if seconds is None or seconds == self._timeout:
            return
        if self._kernel:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(seconds))
        else:
            self.sock.settimeout(seconds)
        self._timeout = seconds

    def _next(self):
        """The next whole message already received, or None."""
        try:
            message = next(self._unpacker)
        except StopIteration:
            return None
        except ValueError as exc:
            # FormatError, StackError (nested too deep), an extension type, a
            # declared length past the limit: all are ValueErrors.
            raise ProtocolError("bad_message", f"not a valid MessagePack message: {exc}") from None
        start, self._boundary = self._boundary, self._unpacker.tell()
        if self._boundary - start > self.max_message:
            # It came whole in the last read; one still on its way is stopped in receive().
            raise self._too_large()
        if not isinstance(message, dict):
            raise ProtocolError("bad_message", "a message must be a MessagePack map")
        return message

    def receive(self):
        """Return the next message, or None if the peer closed between messages."""
        deadline = None
        # Nothing buffered (the usual case, one message per read): go straight to recv.
        message = self._next() if self._fed > self._boundary else None
        while message is None:
            pending = self._fed - self._boundary
            if pending > self.max_message:
                raise self._too_large()
            started = pending > 0
            if not started:
                self._set_timeout(self.idle_timeout)
            elif self.read_timeout is not None:
                if deadline is None:
                    deadline = time.monotonic() + self.read_timeout
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("message not completed in time")
                self._set_timeout(remaining)
            try:
                # Never more than one byte past the limit: that byte is what tells.
                chunk = self.sock.recv(min(65536, self.max_message - pending + 1))
            except BlockingIOError:
                # SO_RCVTIMEO ran out.
                raise TimeoutError("no data in time") from None
            if not chunk:
                if started:
                    raise ProtocolError("truncated", "connection closed inside a message")
                return None
            try:
                self._unpacker.feed(chunk)
            except msgpack.BufferFull:
                raise self._too_large() from None
            self._fed += len(chunk)
            message = self._next()
        return message

    def _too_large(self):
        return ProtocolError(
            "message_too_large", f"message longer than the limit of {self.max_message} bytes"
        )
