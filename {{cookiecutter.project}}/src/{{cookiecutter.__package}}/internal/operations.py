"""The operations of the internal service: plain functions registered by name.

They know nothing of sockets or HTTP. The server looks them up by name, and
tests call them directly with a Storage.
"""

import inspect

TITLE_MAX = 200
BODY_MAX = 10_000
LIMIT_MAX = 100
# SQLite integers are 64-bit signed.
INT_MAX = 2**63 - 1
# The longest answer an operation can give: items.list of LIMIT_MAX items whose
# every character takes 4 bytes of UTF-8, with room for the keys, ids and times.
LONGEST_REPLY = LIMIT_MAX * (4 * (TITLE_MAX + BODY_MAX) + 512)

OPERATIONS = {}


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


class Operation:
    def __init__(self, name, func, idempotent):
        self.name = name
        self.func = func
        self.idempotent = idempotent
        # The first parameter is the storage; the rest are the operation's arguments.
        parameters = list(inspect.signature(func).parameters.values())[1:]
        self.allowed = frozenset(p.name for p in parameters)
        self.required = frozenset(p.name for p in parameters if p.default is p.empty)

    def __call__(self, storage, args):
        # Two set comparisons in C: inspect.Signature.bind costs more than most operations.
        if not self.required <= args.keys() <= self.allowed:
            raise OperationError("invalid_arguments", self._mismatch(args))
        return self.func(storage, **args)

    def _mismatch(self, args):
        missing = sorted(self.required - args.keys())
        if missing:
            return f"{self.name}: missing argument {missing[0]!r}"
        unexpected = sorted(str(key) for key in args.keys() - self.allowed)
        return f"{self.name}: unexpected argument {unexpected[0]!r}"


def operation(name, *, idempotent=False):
    """Register a function under a name. Idempotent ones may be retried by the client."""

    def register(func):
        OPERATIONS[name] = Operation(name, func, idempotent)
        return func

    return register


def idempotent_operations():
    return frozenset(name for name, op in OPERATIONS.items() if op.idempotent)


def _text(field, value, minimum, maximum):
    if not isinstance(value, str) or not minimum <= len(value) <= maximum:
        raise OperationError(
            "invalid", f"{field}: must be a string of {minimum} to {maximum} characters", field
        )
    return value


def _integer(field, value, minimum, maximum=INT_MAX):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum or value > maximum:
        raise OperationError(
            "invalid", f"{field}: must be an integer, {minimum} to {maximum}", field
        )
    return value


def _found(item, item_id):
    if item is None:
        raise OperationError("not_found", f"id: item {item_id} does not exist", "id")
    return item


@operation("service.ping", idempotent=True)
def ping(storage):
    return {"status": "ok"}


@operation("items.create")
def create_item(storage, title, body=""):
    return storage.create(_text("title", title, 1, TITLE_MAX), _text("body", body, 0, BODY_MAX))


@operation("items.get", idempotent=True)
def get_item(storage, id):
    return _found(storage.get(_integer("id", id, 1)), id)


@operation("items.list", idempotent=True)
def list_items(storage, limit=20, offset=0):
    items, total = storage.list(
        _integer("limit", limit, 1, LIMIT_MAX), _integer("offset", offset, 0)
    )
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@operation("items.update", idempotent=True)
def update_item(storage, id, title, body=""):
    item = storage.update(
        _integer("id", id, 1), _text("title", title, 1, TITLE_MAX), _text("body", body, 0, BODY_MAX)
    )
    return _found(item, id)


@operation("items.delete")
def delete_item(storage, id):
    if not storage.delete(_integer("id", id, 1)):
        raise OperationError("not_found", f"id: item {id} does not exist", "id")
    return {"deleted": id}
