"""Fixtures: a real internal service on an ephemeral loopback port, and the API in front of it."""

import os
import secrets
import socket
import subprocess
import sys
import threading
import time

import pytest

from {{ cookiecutter.__package }} import config
from {{ cookiecutter.__package }}.api import create_app
from {{ cookiecutter.__package }}.internal.server import InternalServer
from {{ cookiecutter.__package }}.internal.storage import Storage

PREFIX = config.PREFIX
TOKEN = secrets.token_urlsafe(32)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, timeout=15.0, process=None):
    """Wait until something accepts on 127.0.0.1:port (bounded in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{process.args} exited early: {process.stderr.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def refusal(process):
    """A start-up refusal: non-zero exit and exactly one line on stderr, which is returned."""
    _, stderr = process.communicate(timeout=30)
    lines = stderr.strip().splitlines()
    assert process.returncode != 0
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(autouse=True)
def environment(monkeypatch, tmp_path):
    """Every test starts from the defaults, never from a developer's .env or shell."""
    for key in list(os.environ):
        if key.startswith(PREFIX + "_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv(f"{PREFIX}_INTERNAL_TOKEN", TOKEN)
    monkeypatch.setenv(f"{PREFIX}_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv(f"{PREFIX}_INTERNAL_READ_TIMEOUT", "1.0")
    # One host, whatever this project's default: several hosts need TLS (test_tls.py).
    monkeypatch.setenv(f"{PREFIX}_TRUSTED_CLIENTS", "")
    monkeypatch.chdir(tmp_path)


class ThreadedService:
    """The real internal server, serving from a thread of the test process."""

    def __init__(self, settings, port=0):
        self.storage = Storage(settings["STATE_DIR"])
        self.server = InternalServer("127.0.0.1", port, self.storage, settings)
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.storage.close()


@pytest.fixture
def settings():
    return config.load()


@pytest.fixture
def internal_service(settings):
    service = ThreadedService(settings)
    yield service
    service.stop()


@pytest.fixture
def app(internal_service):
    app = create_app({"INTERNAL_ADDRESS": internal_service.address})
    yield app
    app.extensions["internal_client"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def spawn():
    """Start real processes; every one is stopped at the end, even when the test fails."""
    processes = []

    def start(args, env=None, **kwargs):
        full_env = {**os.environ, **(env or {})}
        process = subprocess.Popen(
            [sys.executable, *args],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kwargs,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            stream.close()
