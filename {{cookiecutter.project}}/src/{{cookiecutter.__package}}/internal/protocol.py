"""Length-prefixed JSON frames, the wire format between the API and the internal service.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8
JSON holding one object. The length is checked before the body is read.
"""

import json
import socket
import ssl
import struct
import time

HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer broke the frame format; the connection cannot be trusted any more."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def encode(message):
    data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    return HEADER.pack(len(data)) + data


def _timeval(seconds):
    """SO_RCVTIMEO/SO_SNDTIMEO value; 0 would mean "wait forever", so at least 1 µs."""
    micros = max(1, round(seconds * 1_000_000))
    return struct.pack("ll", micros // 1_000_000, micros % 1_000_000)


class FrameSocket:
    """Reads and writes whole frames on one connected socket.

    With idle_timeout and read_timeout set (the server), waiting for a frame
    may take idle_timeout seconds, but once its first byte has arrived the rest
    must follow within read_timeout, so a slow client cannot hold a thread.
    Without them (the client), `timeout` bounds every read and write.

    On a plain TCP socket the timeouts are the kernel's (SO_RCVTIMEO and
    SO_SNDTIMEO on a blocking socket): a frame then costs one recv and one
    send, where Python's socket timeouts add a poll() before each and an ioctl
    for each change. A TLS socket keeps Python's timeouts, which OpenSSL needs.
    """

    def __init__(self, sock, max_frame, idle_timeout=None, read_timeout=None, timeout=None):
        self.sock = sock
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout if idle_timeout is not None else timeout
        self.read_timeout = read_timeout
        self._buffer = bytearray()
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

    def send(self, message):
        try:
            self.sock.sendall(encode(message))
        except BlockingIOError:
            raise TimeoutError("frame not sent in time") from None

    def _set_timeout(self, seconds):
        if seconds is None or seconds == self._timeout:
            return
        if self._kernel:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(seconds))
        else:
            self.sock.settimeout(seconds)
        self._timeout = seconds

    def _fill(self, deadline):
        """Read more bytes; False on a clean end of stream."""
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("frame not completed in time")
            self._set_timeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            # SO_RCVTIMEO ran out.
            raise TimeoutError("no data in time") from None
        if not chunk:
            return False
        self._buffer += chunk
        return True

    def receive(self):
        """Return the next message, or None if the peer closed between frames."""
        buffer = self._buffer
        deadline = None
        if not buffer:
            self._set_timeout(self.idle_timeout)
            if not self._fill(None):
                return None
        if self.read_timeout is not None:
            deadline = time.monotonic() + self.read_timeout
        while len(buffer) < HEADER.size:
            if not self._fill(deadline):
                raise ProtocolError("truncated", "connection closed inside a frame")
        (size,) = HEADER.unpack_from(buffer)
        if not 0 < size <= self.max_frame:
            raise ProtocolError(
                "frame_too_large" if size else "bad_frame",
                f"frame of {size} bytes; allowed 1 to {self.max_frame}",
            )
        end = HEADER.size + size
        while len(buffer) < end:
            if not self._fill(deadline):
                raise ProtocolError("truncated", "connection closed inside a frame")
        payload = bytes(buffer[HEADER.size : end])
        del buffer[:end]
        try:
            message = json.loads(payload)
        except ValueError:
            raise ProtocolError("bad_frame", "frame is not UTF-8 JSON") from None
        if not isinstance(message, dict):
            raise ProtocolError("bad_frame", "frame must hold a JSON object")
        return message
