"""Prometheus metrics, from prometheus-client in multiprocess mode, served on loopback only.

Off unless METRICS_PORT is set. Each process writes its samples to files under
METRICS_DIR: api/ for gunicorn's workers, internal/ for the internal service
(the same directory on one host: /run/PROJECT/metrics when deployed). The
API's gunicorn master serves both on 127.0.0.1:METRICS_PORT, so the workers'
counts add up and the internal service's come along. An internal service on a
host of its own serves its own on INTERNAL_METRICS_PORT. nginx never proxies
these ports and the firewall keeps them closed; they bind loopback alone.

What is counted (names prefixed {{ cookiecutter.__package }}_):
  api_requests_total{route,method,status}, api_request_duration_seconds{route},
  api_internal_call_duration_seconds{operation},
  internal_operations_total{operation,outcome}, internal_write_duration_seconds,
  internal_auth_failures_total{reason}, internal_rate_limit_trips_total,
  internal_commits_total, internal_committed_writes_total.

prometheus-client decides at import whether it writes to files, from
PROMETHEUS_MULTIPROC_DIR: prepare() sets that first, and only then is it imported.
"""

import os
import shutil
from pathlib import Path

PREFIX = "{{ cookiecutter.__package }}_"
# Seconds: a request answers in milliseconds; the tail is what matters.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def prepare(settings, side):
    """This process's own empty directory of samples, made known to prometheus-client;
    None when metrics are off. Called before anything imports prometheus_client."""
    if not settings["METRICS_PORT"] and not settings["INTERNAL_METRICS_PORT"]:
        return None
    path = Path(settings["METRICS_DIR"]).resolve() / side
    # Samples of a previous run would count twice: this side starts from none.
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def serve(settings, port, sides):
    """Serve the samples of SIDES (subdirectories of METRICS_DIR) on 127.0.0.1:PORT, in a thread."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    for side in sides:
        path = Path(settings["METRICS_DIR"]).resolve() / side
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        MultiProcessCollector(registry, path=str(path))
    return start_http_server(int(port), addr="127.0.0.1", registry=registry)


class Nothing:
    """Metrics off: every recording is a call that does nothing."""

    def request(self, method, route, status, seconds):
        pass

    def hop(self, operation, seconds):
        pass

    def operation(self, name, outcome, seconds, wrote):
        pass

    def auth_failure(self, reason):
        pass

    def rate_limited(self):
        pass

    def commit(self, writes):
        pass


class ApiMetrics(Nothing):
    def __init__(self):
        from prometheus_client import Counter, Histogram

        # registry=None: in multiprocess mode the samples go to files whatever the
        # registry, and a second app in one process (tests) cannot clash.
        self._requests = Counter(
            PREFIX + "api_requests_total",
            "API answers",
            ["route", "method", "status"],
            registry=None,
        )
        self._duration = Histogram(
            PREFIX + "api_request_duration_seconds",
            "API answer time",
            ["route"],
            buckets=BUCKETS,
            registry=None,
        )
        self._hop = Histogram(
            PREFIX + "api_internal_call_duration_seconds",
            "time waiting on the internal service",
            ["operation"],
            buckets=BUCKETS,
            registry=None,
        )

    def request(self, method, route, status, seconds):
        self._requests.labels(route, method, str(status)).inc()
        self._duration.labels(route).observe(seconds)

    def hop(self, operation, seconds):
        self._hop.labels(operation).observe(seconds)


class InternalMetrics(Nothing):
    def __init__(self):
        from prometheus_client import Counter, Histogram

        self._operations = Counter(
            PREFIX + "internal_operations_total",
            "operations run",
            ["operation", "outcome"],
            registry=None,
        )
        self._writes = Histogram(
            PREFIX + "internal_write_duration_seconds",
            "time of a writing operation, its commit (and fsync) included",
            buckets=BUCKETS,
            registry=None,
        )
        self._auth = Counter(
            PREFIX + "internal_auth_failures_total", "refused tokens", ["reason"], registry=None
        )
        self._brake = Counter(
            PREFIX + "internal_rate_limit_trips_total",
            "calls refused by the brute-force brake",
            registry=None,
        )
        # Writes per commit is the second over the first: above 1 with SQLite's group
        # commit (internal/sqlite.py); PostgreSQL commits each write (internal/postgresql.py).
        self._commits = Counter(
            PREFIX + "internal_commits_total", "commits of the store, each durable", registry=None
        )
        self._committed = Counter(
            PREFIX + "internal_committed_writes_total",
            "writes made durable by those commits",
            registry=None,
        )

    def operation(self, name, outcome, seconds, wrote):
        self._operations.labels(name, outcome).inc()
        if wrote:
            self._writes.observe(seconds)

    def auth_failure(self, reason):
        self._auth.labels(reason).inc()

    def rate_limited(self):
        self._brake.inc()

    def commit(self, writes):
        self._commits.inc()
        self._committed.inc(writes)


def for_api(settings):
    return ApiMetrics() if settings["METRICS_PORT"] else Nothing()


def for_internal(settings):
    on = settings["METRICS_PORT"] or settings["INTERNAL_METRICS_PORT"]
    return InternalMetrics() if on else Nothing()
