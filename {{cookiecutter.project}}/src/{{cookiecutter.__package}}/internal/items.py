"""Items on the data side: their table's migrations and the five operations.

The first resource, and the one README.md's "Adding a resource" copies.
"""

from .. import contract
from .operations import implements
from .tables import Table

MIGRATIONS = {
    # IF NOT EXISTS: a database made before migrations existed already has this
    # table; it is then only recorded as migrated, with its rows.
    1: """
    CREATE TABLE IF NOT EXISTS items (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
}

items = Table(contract.items)


@implements(contract.items.create)
def create(db, title, body):
    return items.insert(db, title=title, body=body)


@implements(contract.items.get)
def get(db, id):
    return items.get(db, id)


@implements(contract.items.list)
def list_page(db, limit, offset):
    return items.page(db, limit, offset)


@implements(contract.items.update)
def update(db, id, title, body):
    return items.update(db, id, title=title, body=body)


@implements(contract.items.delete)
def delete(db, id):
    return items.delete(db, id)
