"""Both servers as real processes, gunicorn included, checked through the OS."""

import json
import urllib.request

import psutil
import pytest

from .conftest import PREFIX, free_port, wait_for_port


def listening_addresses(pid):
    """Every (address, port) the process tree of pid listens on, as the kernel reports it."""
    root = psutil.Process(pid)
    found = set()
    for process in [root, *root.children(recursive=True)]:
        for conn in process.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.add((conn.laddr.ip, conn.laddr.port))
    return found


def request(method, url, payload=None):
    assert url.startswith("http://127.0.0.1:")
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - checked above
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
        return response.status, json.loads(response.read())


@pytest.fixture
def stack(spawn, tmp_path):
    ports = {"PUBLIC_PORT": free_port(), "INTERNAL_PORT": free_port()}
    env = {f"{PREFIX}_{key}": str(value) for key, value in ports.items()}
    internal = spawn(["-m", "{{ cookiecutter.__package }}.internal"], env=env)
    wait_for_port(ports["INTERNAL_PORT"], process=internal)
    api = spawn(["-m", "gunicorn", "-c", "python:{{ cookiecutter.__package }}.gunicorn_api"], env=env)
    wait_for_port(ports["PUBLIC_PORT"], process=api)
    return ports, internal, api


def test_both_servers_listen_on_loopback_only_and_serve(stack):
    ports, internal, api = stack
    assert listening_addresses(internal.pid) == {("127.0.0.1", ports["INTERNAL_PORT"])}
    assert listening_addresses(api.pid) == {("127.0.0.1", ports["PUBLIC_PORT"])}

    base = f"http://127.0.0.1:{ports['PUBLIC_PORT']}/api/v1"
    assert request("GET", f"{base}/ready") == (200, {"status": "ready"})
    status, item = request("POST", f"{base}/items", {"title": "end to end"})
    assert status == 201
    assert request("GET", f"{base}/items/{item['id']}") == (200, item)


def test_gunicorn_config_refuses_a_wildcard_public_bind(spawn):
    api = spawn(
        ["-m", "gunicorn", "-c", "python:{{ cookiecutter.__package }}.gunicorn_api"],
        env={f"{PREFIX}_PUBLIC_BIND": "0.0.0.0", f"{PREFIX}_PUBLIC_PORT": str(free_port())},
    )
    _, stderr = api.communicate(timeout=30)
    assert api.returncode != 0
    assert f"{PREFIX}_PUBLIC_BIND" in stderr and "wildcard" in stderr
