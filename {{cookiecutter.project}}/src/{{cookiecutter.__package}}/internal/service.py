"""The service's own operations on the data side."""

from .. import contract
from .operations import implements


@implements(contract.service.ping)
def ping(db):
    # Reading the schema's record proves the store answers, not only this process.
    db.one("SELECT count(*) FROM schema_migrations")
    return {"status": "ok"}
