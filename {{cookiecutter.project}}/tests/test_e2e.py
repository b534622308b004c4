"""Both servers as real processes, started by honcho from the Procfile, checked through the OS."""

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

from .support import (
    ADMIN,
    PREFIX,
    SETTING,
    TOKEN,
    free_port,
    ready_store,
    refusal,
    socket_activated,
    wait_for_port,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def listening_addresses(pid):
    """Every (address, port) the process tree of pid listens on, as the kernel reports it."""
    root = psutil.Process(pid)
    found = set()
    for process in [root, *root.children(recursive=True)]:
        for conn in process.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.add((conn.laddr.ip, conn.laddr.port))
    return found


def request(method, url, payload=None, token=None):
    assert url.startswith("http://127.0.0.1:")
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - checked above
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
        return response.status, json.loads(response.read())


@pytest.fixture
def honcho(spawn, tmp_path):
    """`honcho start` as a developer runs it, with the ports and token in its env file."""
    ports = {"PUBLIC_PORT": free_port(), "INTERNAL_PORT": free_port()}
    env_file = tmp_path / "test.env"
    settings = {**ports, "INTERNAL_TOKEN": TOKEN, "ADMIN_TOKEN": ADMIN}
    settings[SETTING] = ready_store()
    # Quoted: honcho drops the spaces of an unquoted value (a conninfo has some).
    env_file.write_text("".join(f'{PREFIX}_{key}="{value}"\n' for key, value in settings.items()))
    bin_dir = os.path.dirname(sys.executable)
    process = spawn(
        ["-m", "honcho", "-f", str(PROJECT_ROOT / "Procfile"), "-e", str(env_file), "start"],
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        cwd=tmp_path,
    )
    wait_for_port(ports["INTERNAL_PORT"], process=process)
    wait_for_port(ports["PUBLIC_PORT"], process=process)
    return ports, process


def admin_command(ports, *args):
    """The admin command, as a developer runs it beside `honcho start`."""
    env = {**os.environ, f"{PREFIX}_INTERNAL_PORT": str(ports["INTERNAL_PORT"])}
    command = [sys.executable, "-m", "{{ cookiecutter.__package }}.admin", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_both_servers_listen_on_loopback_only_and_serve(honcho):
    ports, process = honcho
    assert listening_addresses(process.pid) == {
        ("127.0.0.1", ports["PUBLIC_PORT"]),
        ("127.0.0.1", ports["INTERNAL_PORT"]),
    }
    base = f"http://127.0.0.1:{ports['PUBLIC_PORT']}/api/v1"
    assert request("GET", f"{base}/ready") == (200, {"status": "ready"})
    made = admin_command(ports, "tokens", "create", "--name", "e2e", "--scope", "items:write",
                         "--scope", "items:read")  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.splitlines()[-1]
    status, item = request("POST", f"{base}/items", {"title": "end to end"}, token)
    assert status == 201
    assert request("GET", f"{base}/items/{item['id']}", token=token) == (200, item)


def test_ctrl_c_stops_both_servers(honcho):
    _, process = honcho
    children = psutil.Process(process.pid).children(recursive=True)
    assert len(children) >= 3  # shells or servers, gunicorn workers
    process.send_signal(signal.SIGINT)
    process.wait(timeout=20)
    _, alive = psutil.wait_procs(children, timeout=20)
    assert alive == []


def test_gunicorn_config_refuses_a_wildcard_public_bind(spawn):
    api = spawn(
        ["-m", "gunicorn", "-c", "python:{{ cookiecutter.__package }}.gunicorn_api"],
        env={f"{PREFIX}_PUBLIC_BIND": "0.0.0.0", f"{PREFIX}_PUBLIC_PORT": str(free_port())},
    )
    line = refusal(api)
    assert f"{PREFIX}_PUBLIC_BIND" in line and "wildcard" in line


def test_internal_service_serves_a_socket_from_systemd(spawn):
    process, port = socket_activated(spawn, "127.0.0.1")
    wait_for_port(port, process=process)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"\x00\x00\x00\x02{}")
        assert conn.recv(4096)  # the refusal of a message without the token
    assert listening_addresses(process.pid) == {("127.0.0.1", port)}


def test_internal_service_refuses_an_inherited_wildcard_socket(spawn):
    process, _ = socket_activated(spawn, "0.0.0.0")
    line = refusal(process)
    assert f"{PREFIX}_INTERNAL_BIND" in line and "wildcard" in line
