"""Idempotent writes: a write sent with an Idempotency-Key is done once per key.

The key, scoped to the caller's token, is kept with a fingerprint of the
call and its result for IDEMPOTENCY_HOURS. The same key again with the same
call gets the first result back and changes nothing: a client whose request
timed out (a 504) may send it again without making a second row. The same
key with another call is refused (422). The row is written in the same
transaction as the write it records, so both are there or neither is.
"""

import hashlib
import json
from datetime import UTC, datetime, timedelta

from .operations import OperationError
from .tables import now

MIGRATIONS = {
    1: """
    CREATE TABLE idempotency (
        token_id INTEGER NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        result TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (token_id, key)
    )
    """,
    2: "CREATE INDEX idempotency_created_at ON idempotency (created_at)",
}
MISS = object()


def fingerprint(operation, args):
    text = json.dumps([operation.name, args], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def replay(db, token_id, key, operation, args):
    """The first result of this key, MISS if it is new, or 422 if it was used otherwise."""
    # Two requests with one key at once (a retry racing its original, on two
    # instances): the second waits here until the first commits, then replays it.
    db.lock(f"idempotency {token_id} {key}")
    row = db.row(
        "SELECT fingerprint, result FROM idempotency WHERE token_id = ? AND key = ?",
        (token_id, key),
    )
    if row is None:
        return MISS
    if row[0] != fingerprint(operation, args):
        message = "Idempotency-Key: already used for another request; use a new key"
        raise OperationError("idempotency_mismatch", message, "Idempotency-Key")
    return json.loads(row[1])


def remember(db, token_id, key, operation, args, result, hours):
    """Keep KEY's result, and forget the keys older than HOURS."""
    cutoff = (datetime.now(UTC) - timedelta(hours=hours)).isoformat(timespec="milliseconds")
    db.run("DELETE FROM idempotency WHERE created_at < ?", (cutoff,))
    db.run(
        "INSERT INTO idempotency (token_id, key, fingerprint, result, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (token_id, key, fingerprint(operation, args), json.dumps(result), now()),
    )
