"""Who may run what, decided once per call, before the operation runs.

* An admin operation needs a connection made with the admin secret
  (ADMIN_TOKEN); the API's connections, made with INTERNAL_TOKEN, never get one.
* An operation with a scope needs an API token that holds it. Without a token,
  only reads, and only with ANONYMOUS_READS on. The token is looked up here, by
  its hash, in the same round trip as the operation: revoking one takes
  effect on the very next call, in every API worker.
* Failed authentications are counted per client address, here, where every
  worker's calls meet. Past AUTH_FAILURES within AUTH_WINDOW seconds the
  address is refused, without any lookup, for the rest of the window.
"""

import collections
import threading
import time

from .. import metrics
from . import tokens
from .operations import OperationError

# Addresses whose failures are remembered at once; the oldest is forgotten first.
MAX_ADDRESSES = 65536


class Limiter:
    """Failed authentications per address in a sliding window, in memory, bounded."""

    def __init__(self, limit, window, clock=time.monotonic):
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures = collections.OrderedDict()  # address -> deque of times
        self._lock = threading.Lock()

    def wait(self, address):
        """Seconds ADDRESS must still wait (0: it may try)."""
        with self._lock:
            times = self._recent(address)
            if times is None or len(times) < self.limit:
                return 0.0
            return max(0.0, times[0] + self.window - self.clock())

    def failed(self, address):
        with self._lock:
            times = self._recent(address) or collections.deque()
            times.append(self.clock())
            self._failures[address] = times
            self._failures.move_to_end(address)
            while len(self._failures) > MAX_ADDRESSES:
                self._failures.popitem(last=False)

    def _recent(self, address):
        times = self._failures.get(address)
        if times is None:
            return None
        horizon = self.clock() - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times


class Gate:
    """The settings that decide access, and the limiter every connection shares."""

    def __init__(self, settings, recorder=None):
        self.anonymous_reads = settings["ANONYMOUS_READS"]
        self.limiter = Limiter(settings["AUTH_FAILURES"], settings["AUTH_WINDOW"])
        self.recorder = recorder or metrics.Nothing()

    def admit(self, db, operation, caller, role):
        """The caller's token row (or None when none is needed); else an OperationError."""
        if operation.admin or role == "admin":
            if not (operation.admin and role == "admin"):
                raise OperationError("forbidden", f"{operation.name}: not on this connection")
            return None
        if operation.scope is None:
            return None
        address = caller.get("address", "")
        wait = self.limiter.wait(address)
        if wait:
            self.recorder.rate_limited()
            message = "too many failed authentications from this address"
            raise OperationError("rate_limited", message, retry_after=max(1, round(wait)))
        return self._token(db, operation, caller, address)

    def _token(self, db, operation, caller, address):
        token = caller.get("token")
        if not token:
            if self.anonymous_reads and not operation.writes:
                return None
            raise OperationError("unauthorized", "this operation needs a bearer token")
        row = tokens.valid(db, token)
        if row is None:
            self.limiter.failed(address)
            self.recorder.auth_failure("invalid_token")
            raise OperationError("invalid_token", "the token is not valid")
        if operation.scope not in row["scopes"]:
            self.recorder.auth_failure("insufficient_scope")
            message = f"this operation needs a token with the scope {operation.scope}"
            raise OperationError(
                "insufficient_scope", message, token_id=row["id"], scope=operation.scope
            )
        return row
