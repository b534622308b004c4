"""The API's gunicorn worker class: gthread, with a deadline on every read from a client.

gthread keeps connections open between requests (nginx's upstream keepalive
reuses them), holding idle ones in its poller rather than in a thread. But a
thread that reads a request reads from a blocking socket without a deadline:
a client that sends half a request line and stops would hold that thread for
good, and the worker's heartbeat goes on, so nothing ever frees it. Here the
client socket's blocking mode always carries a deadline (BODY_TIMEOUT
seconds, set by gunicorn_api.py) per read. A request that stalls before its headers are complete is
closed (quietly: gunicorn takes it for a client that went away); one that
stalls in its body gets the app's 408 (gunicorn_api.pre_request).

A new connection that has sent nothing yet goes to the poller at once too:
gunicorn would otherwise wait up to 5 s for its first byte in a thread, and a
few idle connections would hold every thread.

nginx in front already sends whole requests only; this is for whatever else
reaches the loopback port.
"""

import errno
import socket

from gunicorn.workers import gthread


class _DeadlineSocket(socket.socket):
    """A client socket whose blocking reads and writes wait `deadline` seconds at most."""

    deadline = 10.0
    # gunicorn_api.pre_request sets the body's own timeout (settimeout) once the
    # headers are in: from then on a stall is the app's to answer (408).
    headers_read = False

    def setblocking(self, flag):
        if flag:
            self.headers_read = False
            self.settimeout(self.deadline)
        else:
            super().setblocking(False)

    def recv_into(self, buffer, nbytes=0, flags=0):
        try:
            return super().recv_into(buffer, nbytes, flags)
        except TimeoutError:
            if self.headers_read:
                raise
            raise _stalled() from None

    def recv(self, bufsize, flags=0):
        try:
            return super().recv(bufsize, flags)
        except TimeoutError:
            if self.headers_read:
                raise
            raise _stalled() from None


def _stalled():
    """A half-sent request line or header block, as a reset: gunicorn drops the
    connection as one whose client went away, without a traceback."""
    return ConnectionResetError(errno.ECONNRESET, "request headers stalled")


def body_deadline(sock, seconds):
    """From now on a stall on SOCK is the body's: a timeout, for the app's 408."""
    if isinstance(sock, _DeadlineSocket):
        sock.headers_read = True
    sock.settimeout(seconds)


# How long a thread waits for a new connection's first byte before it leaves
# the connection to the poller: enough for a proxy's request sent with its connect.
FIRST_BYTE_S = 0.05


class Worker(gthread.ThreadWorker):
    """gthread whose client sockets are _DeadlineSockets, and which never keeps a
    thread waiting on a connection that has sent nothing."""

    @staticmethod
    def set_deadline(seconds):
        """The longest one read (or write) of a client's request may wait."""
        _DeadlineSocket.deadline = seconds

    def enqueue_req(self, conn):
        if type(conn.sock) is socket.socket:
            plain = conn.sock
            conn.sock = _DeadlineSocket(plain.family, plain.type, plain.proto, plain.detach())
        super().enqueue_req(conn)

    def handle(self, conn):
        if not conn.initialized and not conn.wait_for_data(FIRST_BYTE_S):
            # gthread's own way to say "not yet": the poller hands it back once readable.
            return gthread._DEFER
        return super().handle(conn)
