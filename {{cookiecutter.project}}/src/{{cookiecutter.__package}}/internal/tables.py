"""The SQL every resource's table shares, written once.

A Table serves a contract.Resource: a table named after it with an id, the
resource's fields, created_at and updated_at. It inserts, reads one row or a
page of rows, replaces and deletes, maps booleans back from SQLite's 0 and
1, and turns a missing row into the not_found error that names the id.
Column names come from the contract, never from a request.
"""

# ruff: noqa: S608 - table and column names come from the contract; values are always bound.

from datetime import UTC, datetime

from .. import contract
from .operations import OperationError


def now():
    """A time as the rows keep it: ISO 8601 in UTC, to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Table:
    def __init__(self, resource, name=None):
        self.resource = resource
        self.name = name or resource.name
        self.fields = tuple(resource.fields)
        self.columns = ("id", *self.fields, "created_at", "updated_at")
        self._booleans = [
            key for key, field in resource.fields.items() if isinstance(field, contract.Boolean)
        ]
        columns = ", ".join(self.columns)
        marks = ", ".join("?" for _ in self.fields)
        assignments = ", ".join(f"{key} = ?" for key in self.fields)
        self._insert = (
            f"INSERT INTO {self.name} ({', '.join(self.fields)}, created_at, updated_at)"
            f" VALUES ({marks}, ?, ?) RETURNING {columns}"
        )
        self._select = f"SELECT {columns} FROM {self.name} WHERE id = ?"
        self._page = f"SELECT {columns} FROM {self.name} ORDER BY id LIMIT ? OFFSET ?"
        self._count = f"SELECT count(*) AS total FROM {self.name}"
        self._update = (
            f"UPDATE {self.name} SET {assignments}, updated_at = ? WHERE id = ? RETURNING {columns}"
        )
        self._delete = f"DELETE FROM {self.name} WHERE id = ?"

    def not_found(self, row_id):
        message = f"id: {self.resource.singular} {row_id} does not exist"
        return OperationError("not_found", message, "id")

    def _row(self, values, row_id=None):
        """A row's tuple of values as the dict the contract answers with."""
        if values is None:
            raise self.not_found(row_id)
        row = dict(zip(self.columns, values, strict=True))
        for key in self._booleans:
            row[key] = bool(row[key])
        return row

    def insert(self, db, **values):
        stamp = now()
        return self._row(db.row(self._insert, (*self._values(values), stamp, stamp)))

    def get(self, db, row_id):
        return self._row(db.row(self._select, (row_id,)), row_id)

    def page(self, db, limit, offset):
        """A page of rows, oldest first, with the total: {NAME: [...], total, limit, offset}."""
        rows = [self._row(row) for row in db.rows(self._page, (limit, offset))]
        (total,) = db.row(self._count)
        return {self.resource.name: rows, "total": total, "limit": limit, "offset": offset}

    def update(self, db, row_id, **values):
        return self._row(db.row(self._update, (*self._values(values), now(), row_id)), row_id)

    def delete(self, db, row_id):
        if not db.run(self._delete, (row_id,)):
            raise self.not_found(row_id)
        return {"deleted": row_id}

    def _values(self, values):
        return [values[key] for key in self.fields]
