"""The internal service: it owns the data and runs the operations.

operations.py holds the operations as plain functions registered by name,
storage.py the SQLite store, protocol.py the MessagePack wire format and
server.py the transport. Run it with `python -m {{ cookiecutter.__package }}.internal`.
"""
