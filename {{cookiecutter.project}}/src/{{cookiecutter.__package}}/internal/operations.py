"""The registry of the internal service's operations, and their errors.

Each unit's module (internal/NAME.py) registers a plain function for each of
its operations with @implements(contract.NAME.verb). runner.py looks the
operation up by the name on the wire and calls the function. A function
takes the Database of its transaction and the checked arguments; one that
also needs the settings declares a keyword-only `settings` parameter.
"""

import importlib
import inspect

from .. import contract

# operation name -> Implementation
IMPLEMENTATIONS = {}


class OperationError(Exception):
    """An expected failure, returned to the caller as a structured error.

    details (retry_after, scope) travel with it; token_id only marks the audit row.
    """

    def __init__(self, code, message, field=None, token_id=None, **details):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.token_id = token_id
        self.details = details

    def as_dict(self):
        error = {"code": self.code, "message": self.message}
        if self.field:
            error["field"] = self.field
        error.update(self.details)
        return error


class Implementation:
    __slots__ = ("operation", "func", "wants_settings")

    def __init__(self, operation, func):
        self.operation = operation
        self.func = func
        self.wants_settings = "settings" in inspect.signature(func).parameters


def implements(operation):
    """Register the decorated function as what runs OPERATION (a contract.Operation)."""

    def register(func):
        if operation.name in IMPLEMENTATIONS:
            raise ValueError(f"{operation.name} is implemented twice")
        IMPLEMENTATIONS[operation.name] = Implementation(operation, func)
        return func

    return register


def load_units():
    """Import internal/NAME.py for every unit of the contract, in its order; return the modules.

    Every operation of the contract must then have its function, or the
    service would accept a call it cannot run.
    """
    modules = [importlib.import_module(f".{unit.name}", __package__) for unit in contract.UNITS]
    missing = sorted(set(contract.OPERATIONS) - set(IMPLEMENTATIONS))
    if missing:
        raise LookupError(f"no function implements {', '.join(missing)} (use @implements)")
    return modules


def find(name):
    """The Implementation of the operation called NAME, or OperationError."""
    try:
        return IMPLEMENTATIONS[name]
    except (KeyError, TypeError):
        raise OperationError("unknown_operation", f"no operation named {name!r}") from None
