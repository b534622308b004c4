"""API tokens on the data side: their table, the admin operations, and the check of a token.

Only the SHA-256 of a token is stored, with a short prefix to recognise it
by in `tokens list`. The token itself exists once, in the answer to
tokens.create, which the admin command prints and nothing logs.
"""

import hashlib
import threading
from datetime import UTC, datetime, timedelta

from .. import contract
from .operations import OperationError, implements
from .tables import now

MIGRATIONS = {
    1: """
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        revoked BOOLEAN NOT NULL DEFAULT FALSE,
        last_used_at TEXT
    )
    """,
}
# Characters of the token kept in the clear, to tell tokens apart in a listing.
SHOWN = len(contract.TOKEN_PREFIX) + 4
# last_used_at is written at most this often per token: a read stays a read.
TOUCH_EVERY = timedelta(seconds=60)
COLUMNS = ("id", "name", "scopes", "prefix", "created_at", "expires_at", "revoked", "last_used_at")
LIST = (
    "SELECT id, name, scopes, prefix, created_at, expires_at, revoked, last_used_at"
    " FROM tokens ORDER BY id DESC LIMIT ?"
)


def digest(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def valid(db, token):
    """The row of TOKEN if it is well formed, known, not revoked and not expired; else None."""
    if not contract.well_formed(token):
        return None
    row = db.row(
        "SELECT id, scopes, expires_at, revoked, last_used_at FROM tokens WHERE hash = ?",
        (digest(token),),
    )
    if row is None or row[3] or row[2] <= now():
        return None
    return {"id": row[0], "scopes": row[1].split(), "last_used_at": row[4]}


def needs_touch(row):
    """Whether the token's last use is older than TOUCH_EVERY (or was never recorded)."""
    last = row["last_used_at"]
    stale = (datetime.now(UTC) - TOUCH_EVERY).isoformat(timespec="milliseconds")
    return last is None or last < stale


class LastUse:
    """Tokens used since the last write of their last_used_at, written in the background:
    recording a use never puts a write, or a wait for the store, in a request's way."""

    def __init__(self, storage, every=5.0):
        self._storage = storage
        self._every = every
        self._pending = {}  # token id -> when it was used
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = None

    def note(self, token_id):
        with self._lock:
            self._pending[token_id] = now()
            if self._thread is None and not self._stopped.is_set():
                self._thread = threading.Thread(target=self._flush_forever, daemon=True)
                self._thread.start()

    def stop(self):
        """Write what is pending and end the thread: the store is about to close."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=self._every + 5)
        self.flush()

    def _flush_forever(self):
        while not self._stopped.wait(self._every):
            self.flush()

    def flush(self):
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            with self._storage.transaction(write=True) as db:
                for token_id, used in pending.items():
                    db.run("UPDATE tokens SET last_used_at = ? WHERE id = ?", (used, token_id))
        except OperationError:
            # A busy store: keep them for the next round, unless used again meanwhile.
            with self._lock:
                self._pending = {**pending, **self._pending}


@implements(contract.tokens.create)
def create(db, name, scopes, expires_days, *, settings):
    longest = settings["TOKEN_MAX_DAYS"]
    if expires_days > longest:
        message = f"expires_days: must be at most {longest} (TOKEN_MAX_DAYS)"
        raise OperationError("invalid", message, "expires_days")
    token = contract.new_token()
    created = datetime.now(UTC)
    expires = (created + timedelta(days=expires_days)).isoformat(timespec="milliseconds")
    token_id = db.row(
        "INSERT INTO tokens (name, scopes, hash, prefix, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (name, " ".join(scopes), digest(token), token[:SHOWN], now(), expires),
    )[0]
    return {"id": token_id, "name": name, "scopes": scopes, "expires_at": expires, "token": token}


@implements(contract.tokens.list)
def list_tokens(db, limit):
    found = [dict(zip(COLUMNS, row, strict=True)) for row in db.rows(LIST, (limit,))]
    for token in found:
        token["scopes"] = token["scopes"].split()
        token["revoked"] = bool(token["revoked"])
    return {"tokens": found}


@implements(contract.tokens.revoke)
def revoke(db, id):
    if not db.run("UPDATE tokens SET revoked = TRUE WHERE id = ?", (id,)):
        raise OperationError("not_found", f"id: token {id} does not exist", "id")
    return {"id": id, "revoked": True}
