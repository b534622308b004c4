"""Loaded by the schemathesis CLI (SCHEMATHESIS_HOOKS) in test_schemathesis.py.

A POST's Idempotency-Key makes the write happen once per key: the same key
with another body is refused (422) and with the same body answers with the
first resource, by design. Schemathesis draws keys from a small space and
reuses them across unrelated requests, which its checks would then take for
bugs ("valid request rejected", "created resource not found"). So each well-
formed key it generates becomes a fresh one; malformed keys stay as they are,
to be refused. Negative cases are left alone: they are refused before any
write, and an edit would make schemathesis revalidate the case as positive
(a "missing Authorization" case would then be sent with the token).
"""

import re
import uuid

import schemathesis

HEADER = "Idempotency-Key"
WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{8,128}")


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return
    key = case.headers.get(HEADER) if case.headers else None
    if isinstance(key, str) and WELL_FORMED.fullmatch(key):
        case.headers[HEADER] = str(uuid.uuid4())
