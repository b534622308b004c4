"""The internal service: it owns the data and runs the operations.

One module per unit of the contract (items.py, service.py, ...) holds its
migrations, SQL and operations. The generic parts serve them all:
operations.py runs a named operation, tables.py is the SQL of a resource's
table, storage.py the SQLite store, migrations.py brings its schema up to
date, server.py the transport. Run it with `python -m {{ cookiecutter.__package }}.internal`.
"""
