"""The request id: one per request, returned in X-Request-ID and given to the internal service.

nginx makes one ($request_id) and passes it on; it is taken when the peer is
the trusted proxy (api/proxy.py) and it is well formed. Otherwise, or when
the header is absent, a fresh one is made. The audit trail records it.
"""

import re
import uuid

from flask import g, request

from .proxy import TRUSTED_PEER

HEADER = "X-Request-ID"
WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{8,128}")


def assign():
    incoming = request.headers.get(HEADER, "")
    trusted = request.environ.get(TRUSTED_PEER, False)
    g.request_id = incoming if trusted and WELL_FORMED.fullmatch(incoming) else uuid.uuid4().hex


def echo(response):
    request_id = g.get("request_id")
    if request_id:
        response.headers[HEADER] = request_id
    return response


def register(app):
    app.before_request(assign)
    app.after_request(echo)
