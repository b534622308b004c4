"""The audit trail: one row for every write and every admin action, and its listing.

Rows are appended by operations.run, in the same transaction as the write
they record, so a write and its row are committed together. No operation
updates or deletes them. A row holds the token's id, never the token.
"""

from datetime import UTC, datetime

from .. import contract
from .operations import OperationError, implements
from .tables import now

MIGRATIONS = {
    1: """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        token_id INTEGER,
        actor TEXT NOT NULL,
        client TEXT NOT NULL,
        request_id TEXT NOT NULL,
        operation TEXT NOT NULL,
        target_id INTEGER,
        outcome TEXT NOT NULL
    )
    """,
}
COLUMNS = (
    "id",
    "at",
    "token_id",
    "actor",
    "client",
    "request_id",
    "operation",
    "target_id",
    "outcome",
)
LIST = (
    "SELECT id, at, token_id, actor, client, request_id, operation, target_id, outcome"
    " FROM audit WHERE at >= ? ORDER BY id DESC LIMIT ?"
)


def append(db, entry):
    """Record ENTRY: token_id, actor, client, request_id, operation, target_id, outcome."""
    db.run(
        "INSERT INTO audit (at, token_id, actor, client, request_id, operation, target_id, outcome)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (now(), *(entry[key] for key in COLUMNS[2:])),
    )


@implements(contract.audit.list)
def list_entries(db, since, limit):
    """The LIMIT latest rows at or after SINCE (ISO 8601; empty: all), oldest first."""
    start = _iso(since) if since else ""
    if start is None:
        message = "since: must be an ISO 8601 time, such as 2026-12-31T23:59:00Z"
        raise OperationError("invalid", message, "since")
    rows = db.rows(LIST, (start, limit))
    return {"entries": [dict(zip(COLUMNS, row, strict=True)) for row in reversed(rows)]}


def _iso(text):
    """TEXT as the rows keep times (UTC, milliseconds), or None if it is not a time."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")
