"""The contract between the two processes: what the API may ask of the internal
service, with which arguments, and how long an answer may be.

The API and the internal service import this module, protocol.py for the
bytes on the wire, and nothing of each other (tests/test_boundaries.py reads
the imports). Each unit of operations is declared here once:

* a Resource is a table of rows with its fields, and gets the five CRUD
  operations NAME.create, .get, .list, .update and .delete, which need the
  scopes NAME:read (get, list) and NAME:write (the rest);
* a Unit holds operations of its own, such as service.ping; an admin unit
  (tokens, audit) serves the admin command alone, never the API.

A caller proves who it is with an API token (new_token, well_formed): the
API passes the token it was shown with each call, and the internal service
checks it and the operation's scope in the same round trip.

The internal service checks every call's arguments against these fields
before it runs the operation (internal/operations.py); the API builds its
request models, and so the OpenAPI document, from the same fields
(api/resource.py). Each unit has one module on each side, named after it:
api/NAME.py and internal/NAME.py. README.md, "Adding a resource", shows the
steps.
"""

import re
import secrets
import string
import zlib
from dataclasses import dataclass
from typing import Any

# The largest integer either store keeps: 64-bit signed.
INT_MAX = 2**63 - 1
# The most rows one page of a list may hold.
PAGE_MAX = 100
# MessagePack bytes of one row besides its fields: keys, id and the two times.
ROW_OVERHEAD = 512


class _Required:
    def __repr__(self):
        return "REQUIRED"


# The default of a field that every call must give.
REQUIRED = _Required()


class ContractError(ValueError):
    """A call's arguments break the contract. The message names the field."""

    def __init__(self, code, message, field=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


# Text never holds NUL (U+0000): PostgreSQL's text cannot, so neither store takes it.
TEXT_PATTERN = r"^[^\x00]*$"


@dataclass(frozen=True)
class Text:
    min_length: int = 0
    max_length: int = 1000
    default: Any = REQUIRED

    def check(self, name, value):
        if (
            isinstance(value, str)
            and self.min_length <= len(value) <= self.max_length
            and "\x00" not in value
        ):
            return value
        bounds = f"{self.min_length} to {self.max_length}"
        message = f"{name}: must be a string of {bounds} characters, without NUL"
        raise ContractError("invalid", message, name)

    @property
    def longest(self):
        """Its most bytes in MessagePack: a 5-byte header, then up to 4 bytes a character."""
        return 5 + 4 * self.max_length


@dataclass(frozen=True)
class Integer:
    minimum: int = 0
    maximum: int = INT_MAX
    default: Any = REQUIRED
    longest = 9

    def check(self, name, value):
        if type(value) is int and self.minimum <= value <= self.maximum:
            return value
        bounds = f"{self.minimum} to {self.maximum}"
        raise ContractError("invalid", f"{name}: must be an integer, {bounds}", name)


@dataclass(frozen=True)
class Boolean:
    default: Any = REQUIRED
    longest = 1

    def check(self, name, value):
        if isinstance(value, bool):
            return value
        raise ContractError("invalid", f"{name}: must be true or false", name)


@dataclass(frozen=True)
class Scopes:
    """A list of scopes, each one that some operation of the contract needs."""

    default: Any = REQUIRED
    longest = 1024

    def check(self, name, value):
        known = scopes()
        if (
            isinstance(value, list)
            and value
            and all(isinstance(scope, str) and scope in known for scope in value)
        ):
            return sorted(set(value))
        allowed = ", ".join(sorted(known))
        raise ContractError("invalid", f"{name}: must be a list of one or more of {allowed}", name)


# Every operation by name, as the wire names it.
OPERATIONS = {}
# Every unit, in the order declared: both sides load their modules in this order.
UNITS = []


class Operation:
    """One call: its arguments, whether it writes, and whether a retry is safe.

    idempotent: running it twice leaves the same state as once, so the client
    may send it again on a new connection when the old one broke.
    reply: the most bytes its answer may take on the wire.
    scope: what the caller's token must allow; admin: for the admin command only.
    """

    def __init__(
        self,
        name,
        args=None,
        *,
        writes=False,
        idempotent=False,
        reply=1024,
        scope=None,
        admin=False,
    ):
        if name in OPERATIONS:
            raise ValueError(f"operation {name!r} is declared twice")
        self.name = name
        self.args = dict(args or {})
        self.writes = writes
        self.idempotent = idempotent
        self.reply = reply
        # The scope a caller's token must hold; None: anyone (service.ping).
        self.scope = scope
        # Only a connection made with the admin secret may run it.
        self.admin = admin
        self._required = frozenset(
            key for key, field in self.args.items() if field.default is REQUIRED
        )
        OPERATIONS[name] = self

    def __repr__(self):
        return f"<Operation {self.name}>"

    def check(self, args):
        """The arguments, defaults filled in, each checked; ContractError names the first bad."""
        if not self._required <= args.keys() <= self.args.keys():
            raise ContractError("invalid_arguments", self._mismatch(args))
        return {
            key: field.check(key, args[key]) if key in args else field.default
            for key, field in self.args.items()
        }

    def _mismatch(self, args):
        missing = sorted(self._required - args.keys())
        if missing:
            return f"{self.name}: missing argument {missing[0]!r}"
        unexpected = sorted(str(key) for key in args.keys() - self.args.keys())
        return f"{self.name}: unexpected argument {unexpected[0]!r}"


class Unit:
    """Operations that belong together, NAME.verb on the wire.

    admin: every operation needs the admin secret, and the unit has no module
    in the API (admin.py, the admin command, calls it).
    """

    def __init__(self, name, admin=False):
        if any(unit.name == name for unit in UNITS):
            raise ValueError(f"unit {name!r} is declared twice")
        self.name = name
        self.admin = admin
        UNITS.append(self)

    def operation(self, verb, args=None, **flags):
        return Operation(f"{self.name}.{verb}", args, admin=self.admin, **flags)


ID = Integer(1)
PAGE = {"limit": Integer(1, PAGE_MAX, default=20), "offset": Integer(0, default=0)}


class Resource(Unit):
    """A table of rows: an id, FIELDS, created_at and updated_at; the five CRUD operations.

    singular names one row in messages ("item 3 does not exist").
    """

    def __init__(self, name, singular, **fields):
        super().__init__(name)
        self.singular = singular
        self.fields = fields
        row = ROW_OVERHEAD + sum(field.longest for field in fields.values())
        read = {"scope": f"{name}:read", "idempotent": True}
        write = {"scope": f"{name}:write", "writes": True}
        self.create = self.operation("create", fields, reply=row, **write)
        self.get = self.operation("get", {"id": ID}, reply=row, **read)
        self.list = self.operation("list", PAGE, reply=PAGE_MAX * row + 64, **read)
        update = {"id": ID, **fields}
        self.update = self.operation("update", update, reply=row, idempotent=True, **write)
        self.delete = self.operation("delete", {"id": ID}, **write)


def longest_reply():
    """The most bytes any answer may take: the client reads answers up to this."""
    return max(operation.reply for operation in OPERATIONS.values())


def scopes():
    """Every scope some operation needs: what a token may be given."""
    return frozenset(op.scope for op in OPERATIONS.values() if op.scope is not None)


# --- API tokens ------------------------------------------------------------------
# "{{ cookiecutter.__package }}_", 43 random base62 characters (256 bits), then a
# 6-character base62 CRC32 of what precedes it, as GitHub's tokens are made: a
# mistyped token is refused without a lookup, and secret scanners can match the
# pattern (README.md, "Authentication", gives it as a gitleaks rule).
TOKEN_PREFIX = "{{ cookiecutter.__package }}_"  # noqa: S105 - a prefix, not a secret
_BASE62 = string.digits + string.ascii_letters
_RANDOM_LENGTH = 43
_CHECK_LENGTH = 6
TOKEN_LENGTH = len(TOKEN_PREFIX) + _RANDOM_LENGTH + _CHECK_LENGTH
TOKEN_PATTERN = re.compile(re.escape(TOKEN_PREFIX) + "[0-9A-Za-z]+")


def _checksum(text):
    number = zlib.crc32(text.encode("ascii"))
    digits = []
    for _ in range(_CHECK_LENGTH):
        number, digit = divmod(number, 62)
        digits.append(_BASE62[digit])
    return "".join(reversed(digits))


def new_token():
    """A fresh API token. Only its SHA-256 is ever stored."""
    body = TOKEN_PREFIX + "".join(secrets.choice(_BASE62) for _ in range(_RANDOM_LENGTH))
    return body + _checksum(body)


def well_formed(token):
    """Whether TOKEN could be one of ours: the pattern and its checksum. No lookup."""
    if not isinstance(token, str) or len(token) != TOKEN_LENGTH:
        return False
    if not TOKEN_PATTERN.fullmatch(token):
        return False
    return _checksum(token[:-_CHECK_LENGTH]) == token[-_CHECK_LENGTH:]


class Service(Unit):
    """The service's own operations."""

    def __init__(self):
        super().__init__("service")
        # Readiness: the internal service answers and its storage can be read.
        self.ping = self.operation("ping", idempotent=True)


class Tokens(Unit):
    """The API tokens: made, listed and revoked by the admin command."""

    def __init__(self):
        super().__init__("tokens", admin=True)
        token = {"name": Text(1, 100), "scopes": Scopes(), "expires_days": Integer(1, 36500)}
        # The answer holds the token itself: the one time it is ever shown.
        self.create = self.operation("create", token, writes=True)
        newest = {"limit": Integer(1, 1000, default=1000)}
        self.list = self.operation("list", newest, reply=1000 * 1024)
        self.revoke = self.operation("revoke", {"id": ID}, writes=True, idempotent=True)


class Audit(Unit):
    """The audit trail: one row per write and per admin action, never edited."""

    def __init__(self):
        super().__init__("audit", admin=True)
        query = {"since": Text(0, 40, default=""), "limit": Integer(1, 1000, default=100)}
        self.list = self.operation("list", query, reply=1000 * 1024)


service = Service()
tokens = Tokens()
audit = Audit()

items = Resource(
    "items",
    "item",
    title=Text(1, 200),
    body=Text(0, 10_000, default=""),
)
