"""How the internal service runs one call, from its name on the wire to its answer.

1. access.Gate admits the caller, or says why not (the admin secret, the
   token and its scope, the brute-force brake).
2. The arguments are checked against the contract.
3. The operation's function runs inside a transaction of the store: a
   writing one for writes and admin actions, committed before the answer.
4. Writes and admin actions append their audit row in that same transaction;
   one that fails after admission gets a row saying how, afterwards.

In-process callers (tests, scripts) may run without a gate: the server always
passes its own.
"""

import logging
import time

from .. import contract, metrics
from . import audit, idempotency, tokens
from .operations import OperationError, find

log = logging.getLogger(__name__)
# Refusals that leave no audit row: no identity to record, and a flood of them
# must not become a flood of durable writes.
UNRECORDED = frozenset({"unauthorized", "rate_limited"})


class Runner:
    def __init__(self, storage, gate=None, settings=None, recorder=None):
        self.storage = storage
        self.gate = gate
        self.settings = settings
        self.last_use = tokens.LastUse(storage)
        self.recorder = recorder or metrics.Nothing()
        storage.observe_commits(self.recorder.commit)

    def run(self, name, args, caller=None, role="api"):
        """The result of operation NAME with ARGS for CALLER on a ROLE connection;
        each call is one log line and one count, whatever its outcome."""
        started = time.perf_counter()
        outcome = "error"
        try:
            result = self._run(name, args, caller or {}, role)
            outcome = "ok"
            return result
        except OperationError as exc:
            outcome = exc.code
            raise
        finally:
            self._account(name, outcome, time.perf_counter() - started, caller or {}, role)

    def _account(self, name, outcome, seconds, caller, role):
        operation = contract.OPERATIONS.get(name) if isinstance(name, str) else None
        shown = operation.name if operation else "unknown"
        self.recorder.operation(shown, outcome, seconds, bool(operation and operation.writes))
        fields = {
            "request_id": caller.get("request", "-"),
            "role": role,
            "operation": shown,
            "outcome": outcome,
            "duration_ms": round(seconds * 1000, 2),
        }
        log.info("operation", extra={"fields": fields})

    def _run(self, name, args, caller, role):
        found = find(name)
        operation = found.operation
        recorded = operation.writes or operation.admin
        token = None
        try:
            with self.storage.transaction(write=recorded) as db:
                token = self._admit(db, operation, caller, role)
                key = caller.get("key") if operation.writes and token else None
                result = idempotency.replay(db, token["id"], key, operation, args) if key else None
                if key and result is not idempotency.MISS:
                    return result
                result = found.func(db, **self._arguments(found, args))
                if key:
                    hours = self.settings["IDEMPOTENCY_HOURS"] if self.settings else 24
                    idempotency.remember(db, token["id"], key, operation, args, result, hours)
                if recorded:
                    audit.append(db, entry(operation, caller, role, token, args, result, "ok"))
        except OperationError as exc:
            if recorded and exc.code not in UNRECORDED:
                who = token or ({"id": exc.token_id} if exc.token_id else None)
                self._record(entry(operation, caller, role, who, args, None, exc.code))
            raise
        if token is not None and tokens.needs_touch(token):
            self.last_use.note(token["id"])
        return result

    def _admit(self, db, operation, caller, role):
        return self.gate.admit(db, operation, caller, role) if self.gate else None

    def _arguments(self, found, args):
        if not isinstance(args, dict):
            raise OperationError("invalid_arguments", "args must be a map")
        try:
            checked = found.operation.check(args)
        except contract.ContractError as exc:
            raise OperationError(exc.code, exc.message, exc.field) from None
        if found.wants_settings:
            checked["settings"] = self.settings
        return checked

    def _record(self, row):
        try:
            with self.storage.transaction(write=True) as db:
                audit.append(db, row)
        except Exception:
            log.exception(
                "could not record %s (%s) in the audit trail", row["operation"], row["outcome"]
            )


def entry(operation, caller, role, token, args, result, outcome):
    """The audit row of one call."""
    target = result.get("id") if isinstance(result, dict) else None
    if target is None and isinstance(args, dict) and type(args.get("id")) is int:
        target = args["id"]
    return {
        "token_id": token["id"] if token else None,
        "actor": "admin" if role == "admin" else ("token" if token else "anonymous"),
        "client": str(caller.get("address", ""))[:64],
        "request_id": str(caller.get("request", ""))[:128],
        "operation": operation.name,
        "target_id": target,
        "outcome": outcome,
    }
