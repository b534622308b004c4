"""The store of the internal service, as the rest of it sees it.

This project keeps its data in {{ "SQLite (sqlite.py)" if cookiecutter.database == "sqlite" else "PostgreSQL (postgresql.py)" }}. Both backends
offer the same interface:

* Storage.from_settings(settings, schema) opens the store that the setting
  SETTING names and applies the schema's migrations it lacks, or raises one
  of UNUSABLE, or MigrationError; storage.where names the store in messages;
* storage.transaction(write) is a context manager that gives an operation its
  Database (database.py) in a transaction, committed (durably, for a write)
  when the block ends, or rolled back if it raises; a call the store cannot
  take in time raises OperationError "busy";
* storage.commits counts the writes' commits, and observe_commits(f) calls
  f(writes) after each; storage.close() ends it.
"""

from .{{ cookiecutter.database }} import SETTING, UNUSABLE, Storage

__all__ = ["SETTING", "UNUSABLE", "Storage"]
