"""How the internal service runs an operation of the contract.

Each unit's module (internal/NAME.py) registers a plain function for each of
its operations with @implements(contract.NAME.verb). run() looks the
operation up by the name on the wire, checks the arguments against the
contract, and calls the function inside a transaction of the storage: a
writing one for operations that write. The functions know nothing of
sockets; tests call them through run() with a Storage.
"""

import importlib

from .. import contract

# operation name -> (contract.Operation, function(db, **arguments))
IMPLEMENTATIONS = {}


class OperationError(Exception):
    """An expected failure, returned to the caller as a structured error."""

    def __init__(self, code, message, field=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def as_dict(self):
        error = {"code": self.code, "message": self.message}
        if self.field:
            error["field"] = self.field
        return error


def implements(operation):
    """Register the decorated function as what runs OPERATION (a contract.Operation)."""

    def register(func):
        if operation.name in IMPLEMENTATIONS:
            raise ValueError(f"{operation.name} is implemented twice")
        IMPLEMENTATIONS[operation.name] = (operation, func)
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


def run(storage, name, args):
    """Run the operation called NAME with ARGS (a dict) and return its result."""
    try:
        operation, func = IMPLEMENTATIONS[name]
    except (KeyError, TypeError):
        raise OperationError("unknown_operation", f"no operation named {name!r}") from None
    if not isinstance(args, dict):
        raise OperationError("invalid_arguments", "args must be a map")
    try:
        checked = operation.check(args)
    except contract.ContractError as exc:
        raise OperationError(exc.code, exc.message, exc.field) from None
    with storage.transaction(write=operation.writes) as db:
        return func(db, **checked)
