"""Length-prefixed JSON frames, the wire format between the API and the internal service.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8
JSON holding one object. The length is checked before the body is read.
"""

import json
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


class FrameSocket:
    """Reads and writes whole frames on one connected socket.

    With idle_timeout and read_timeout set (the server), waiting for a frame
    may take idle_timeout seconds, but once its first byte has arrived the rest
    must follow within read_timeout, so a slow client cannot hold a thread.
    Without them (the client), the socket's own timeout applies to every read.
    """

    def __init__(self, sock, max_frame, idle_timeout=None, read_timeout=None):
        self.sock = sock
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout
        self.read_timeout = read_timeout
        self._buffer = bytearray()
        self._timeout = sock.gettimeout()

    def send(self, message):
        self.sock.sendall(encode(message))

    def _set_timeout(self, seconds):
        if seconds != self._timeout:
            self.sock.settimeout(seconds)
            self._timeout = seconds

    def _fill(self, deadline):
        """Read more bytes; False on a clean end of stream."""
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("frame not completed in time")
            self._set_timeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self._buffer += chunk
        return True

    def receive(self):
        """Return the next message, or None if the peer closed between frames."""
        buffer = self._buffer
        deadline = None
        if not buffer:
            if self.idle_timeout is not None:
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
