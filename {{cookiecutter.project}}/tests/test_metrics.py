"""Prometheus metrics on a loopback port: they count what the two processes do."""

import re
import urllib.request

import psutil
import pytest

from {{ cookiecutter.__package }} import contract

from .support import (
    PACKAGE,
    PREFIX,
    free_port,
    mint_over_the_wire,
    ready_store,
    refusal,
    start_pair,
    wait_for_port,
)

NAME = "{{ cookiecutter.__package }}_"
ITEM = "/api/v1/items/<id:id>"


def scrape(port):
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - loopback
        return answer.read().decode()


def value(text, metric, **labels):
    """The sample of METRIC with exactly LABELS (0 while it has none)."""
    wanted = ",".join(f'{key}="{val}"' for key, val in sorted(labels.items()))
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        found = ",".join(sorted(rest.split("}")[0].split(",")))
        if labels and name == NAME + metric and found == wanted:
            return float(line.rsplit(" ", 1)[1])
        if not labels and line.startswith(NAME + metric + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def send(port, method, path, token, body=None):
    url = f"http://127.0.0.1:{port}{path}"
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def metered(spawn, tmp_path):
    """Both servers with METRICS_PORT set and a brake that trips after two failures."""
    port = free_port()
    api, internal = start_pair(spawn, tmp_path, METRICS_PORT=port, AUTH_FAILURES=2)
    return api, internal, port


def test_the_counts_move_as_requests_are_made(metered):
    api, internal, port = metered
    token = mint_over_the_wire(f"127.0.0.1:{internal}")
    before = scrape(port)
    assert send(api, "POST", "/api/v1/items", token, b'{"title": "counted"}') == 201
    for _ in range(3):
        assert send(api, "GET", "/api/v1/items/1", token) == 200
    for _ in range(3):  # two unknown tokens trip the brake; the third is refused by it
        send(api, "GET", "/api/v1/items", contract.new_token())
    after = scrape(port)
    reads = {"route": ITEM, "method": "GET", "status": "200"}
    counted = value(after, "api_requests_total", **reads)
    assert counted - value(before, "api_requests_total", **reads) == 3
    assert value(after, "api_internal_call_duration_seconds_count", operation="items.get") >= 3
    assert value(after, "internal_operations_total", operation="items.get", outcome="ok") >= 3
    assert value(after, "internal_write_duration_seconds_count") >= 1
    assert value(after, "internal_auth_failures_total", reason="invalid_token") == 2
    assert value(after, "internal_rate_limit_trips_total") == 1
    assert re.search(r'api_request_duration_seconds_bucket\{le="0.005",route="/api/v1/items', after)


def _listening(process):
    try:
        return [c for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        return []


def test_metrics_listen_on_loopback_alone(metered):
    _, _, port = metered
    found = {
        (conn.laddr.ip, conn.laddr.port)
        for process in psutil.process_iter()
        for conn in _listening(process)
        if conn.laddr.port == port
    }
    assert found == {("127.0.0.1", port)}


@pytest.mark.parametrize("bad", ["80", "metrics", "99999", "{public}"])
def test_a_bad_metrics_port_stops_start_up_with_one_line(spawn, bad):
    public = free_port()
    env = {f"{PREFIX}_PUBLIC_PORT": str(public)}
    env[f"{PREFIX}_METRICS_PORT"] = bad.format(public=public)
    line = refusal(spawn(["-m", "gunicorn", "-c", f"python:{PACKAGE}.gunicorn_api"], env=env))
    assert f"{PREFIX}_METRICS_PORT=" in line


def test_an_internal_service_alone_serves_its_own(spawn, tmp_path):
    port, internal = free_port(), free_port()
    env = {f"{PREFIX}_INTERNAL_METRICS_PORT": str(port), f"{PREFIX}_INTERNAL_PORT": str(internal)}
    ready_store()
    process = spawn(
        ["-m", f"{PACKAGE}.internal"], env=env, log=tmp_path / "internal.log", cwd=tmp_path
    )
    wait_for_port(internal, process=process)
    mint_over_the_wire(f"127.0.0.1:{internal}")
    made = {"operation": "tokens.create", "outcome": "ok"}
    assert value(scrape(port), "internal_operations_total", **made) == 1
