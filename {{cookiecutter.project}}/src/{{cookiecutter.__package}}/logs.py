"""Logging of both processes: one line per event on stderr, where systemd's journal
(or honcho, in development) keeps it. No log files.

LOG_FORMAT=text (the default) writes readable lines; json writes one JSON
object per line, for a collector. An event may carry fields (logged with
extra={"fields": {...}}): the access line of each request, the line of each
operation of the internal service. Nothing here writes a request's headers or
its body, so an Authorization header or a token cannot reach a log.
"""

import json
import logging
import sys
from datetime import UTC, datetime


def _time(record):
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """time level logger: message key=value ..."""

    def format(self, record):
        fields = getattr(record, "fields", {})
        extra = "".join(f" {key}={value}" for key, value in fields.items())
        line = f"{_time(record)} {record.levelname} {record.name}: {record.getMessage()}{extra}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """{"time", "level", "logger", "message", ...fields}: one object per line."""

    def format(self, record):
        entry = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(settings):
    """One handler on stderr for the whole process, at LOG_LEVEL, in LOG_FORMAT."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings["LOG_FORMAT"] == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings["LOG_LEVEL"])
