"""How many connections the internal service holds, and how long one may stay before it
proves itself.

At most INTERNAL_MAX_CONNECTIONS in all. Of those, at most a quarter may not
have shown a secret yet: a newcomer past that pushes out the oldest such
connection, which has had the longest to show one and has not. When every
slot is taken by authenticated connections, a newcomer is closed at once,
before any thread or buffer is spent on it. An unauthenticated connection has
INTERNAL_AUTH_TIMEOUT seconds and AUTH_MAX bytes to show its secret (server.py),
so a peer without it holds neither memory nor a slot for long, and the
connections the API already holds keep working whatever it does.

Accepting may fail for want of file descriptors (EMFILE, ENFILE) or memory:
then the accept loop waits, longer each time up to a second, instead of
spinning on a listening socket that stays readable.
"""

import collections
import errno
import logging
import socket
import threading
import time

log = logging.getLogger(__name__)

# The largest first message: the auth message with its secret is about 100 bytes.
AUTH_MAX = 1024
SHORT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
LONGEST_PAUSE = 1.0


def cut(sock):
    """End a connection from outside its thread: the thread's next read returns nothing."""
    try:
        # socket's own shutdown: SSLSocket's would drop its TLS state
        # under the thread still reading from it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class Slots:
    def __init__(self, limit):
        self.limit = limit
        self.pending_limit = max(2, limit // 4)
        self._pending = collections.OrderedDict()  # not yet authenticated, oldest first
        self._authenticated = set()
        self._lock = threading.Lock()

    def admit(self, sock):
        """Take SOCK on, pushing out the oldest unauthenticated one if need be; False: refuse it."""
        with self._lock:
            crowded = len(self._pending) >= self.pending_limit or self._count() >= self.limit
            if crowded and self._pending:
                oldest, _ = self._pending.popitem(last=False)
                cut(oldest)
            if self._count() >= self.limit:
                return False
            self._pending[sock] = None
            return True

    def _count(self):
        return len(self._pending) + len(self._authenticated)

    def replace(self, old, new):
        """The same connection under a new socket object (TLS wraps the accepted one)."""
        with self._lock:
            if old in self._pending:
                del self._pending[old]
                self._pending[new] = None

    def authenticated(self, sock):
        with self._lock:
            self._pending.pop(sock, None)
            self._authenticated.add(sock)

    def release(self, sock):
        with self._lock:
            self._pending.pop(sock, None)
            self._authenticated.discard(sock)

    def cut_all(self):
        with self._lock:
            for sock in [*self._pending, *self._authenticated]:
                cut(sock)

    def counts(self):
        """(authenticated, pending), for tests and logs."""
        with self._lock:
            return len(self._authenticated), len(self._pending)


class AcceptPause:
    """The accept loop's answer to running short of descriptors or memory: wait, then retry."""

    def __init__(self):
        self._pause = 0.0
        self._logged = 0.0

    def failed(self, exc):
        if exc.errno not in SHORT_OF_RESOURCES:
            return
        self._pause = min(LONGEST_PAUSE, max(0.01, self._pause * 2))
        now = time.monotonic()
        if now - self._logged > 10:
            self._logged = now
            log.error("cannot accept connections: %s; waiting before the next try", exc.strerror)
        time.sleep(self._pause)

    def succeeded(self):
        self._pause = 0.0
