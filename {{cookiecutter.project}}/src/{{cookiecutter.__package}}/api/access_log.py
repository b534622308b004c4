"""The access line: one per request, written when the answer has been made.

Fields: time, request id, client address (as ProxyFix found it), method,
route (the rule, such as /api/v1/items/<id:id>, not the path, so that ids do
not scatter the lines), status, duration in ms, and the time spent waiting on
the internal service. Never a header or a body. metrics.py counts the same
requests.
"""

import logging
import time

from flask import g, request

log = logging.getLogger("{{ cookiecutter.__package }}.access")
ROUTE = "{{ cookiecutter.__package }}.route"


def note_route(response):
    """after_request: the rule that matched, for the line the WSGI layer writes."""
    request.environ[ROUTE] = request.url_rule.rule if request.url_rule else "-"
    request.environ[ROUTE + ".request_id"] = g.get("request_id", "-")
    return response


def wrap(wsgi_app, client, observe):
    """The app, timed: each request logged, and given to OBSERVE(method, route, status, seconds)."""

    def app(environ, start_response):
        started = time.perf_counter()
        client.spent()  # start this request's count of time spent on the internal service
        statuses = []

        def start(status, headers, exc_info=None):
            statuses.append(status)
            return start_response(status, headers, exc_info)

        try:
            return wsgi_app(environ, start)
        finally:
            seconds = time.perf_counter() - started
            status = int(statuses[-1].split()[0]) if statuses else 500
            route = environ.get(ROUTE, "-")
            observe(environ.get("REQUEST_METHOD", "-"), route, status, seconds)
            _line(environ, route, status, seconds, client.spent())

    return app


def _line(environ, route, status, seconds, internal):
    method = environ.get("REQUEST_METHOD", "-")
    fields = {
        "request_id": environ.get(ROUTE + ".request_id", "-"),
        "client": environ.get("REMOTE_ADDR", "-"),
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
        "internal_ms": round(internal * 1000, 2),
    }
    log.info("request", extra={"fields": fields})
