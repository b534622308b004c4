"""The answers gunicorn writes itself, in the API's shape: JSON, our headers, no name.

gunicorn answers a request it cannot parse (a bad request line, a line or
header set past its limits, an unknown transfer coding) before the app ever
sees it, with a small HTML page that names gunicorn and its limits.
gunicorn_api.py puts json_error_writer() in the place of gunicorn's
util.write_error, in the master, before it forks the workers.
"""

import json

# status -> (code, message): the same codes and words as the app's own errors.
ANSWERS = {
    400: ("bad_request", "the request could not be read"),
    403: ("forbidden", "the request is not allowed"),
    414: ("request_uri_too_large", "the request line is too long"),
    417: ("expectation_failed", "the expectation cannot be met"),
    431: ("request_header_fields_too_large", "the request's header fields are too large"),
    500: ("internal_server_error", "the server failed to answer"),
    501: ("not_implemented", "the transfer coding is not supported"),
}


def answer(status, reason, headers):
    """The whole HTTP/1.1 answer, as bytes, with HEADERS ((name, value) pairs) added."""
    code, message = ANSWERS.get(status, (reason.lower().replace(" ", "_"), reason.lower()))
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Connection: close",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_error_writer(write_nonblock, headers):
    """A stand-in for gunicorn.util.write_error(sock, status, reason, message): the
    message (gunicorn's words, its limits) is left out of the answer."""

    def write_error(sock, status_int, reason, mesg):
        write_nonblock(sock, answer(status_int, reason, headers))

    return write_error
