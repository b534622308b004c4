"""Fixtures: a real internal service on an ephemeral loopback port, and the API in front of it.

Helpers the test modules share live in support.py.
"""

import os
import subprocess
import sys

import pytest

from {{ cookiecutter.__package }} import config
from {{ cookiecutter.__package }}.api import create_app

from . import support
from .support import (
    ADMIN,
    PACKAGE,
    PREFIX,
    SETTING,
    TOKEN,
    ThreadedService,
    backend,
    free_port,
    make_pki,
    wait_for_port,
)


@pytest.fixture(scope="session")
def stores():
    """What the tests' stores share (backend.Stores), ended with the session."""
    made = backend.Stores(PACKAGE)
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
def own_store(stores, tmp_path):
    """This test's own store, made ready by the helpers that use it (support.ready_store)."""
    made = support.current_store = stores.store(tmp_path)
    try:
        yield made
    finally:
        support.current_store = None
        made.finish()


@pytest.fixture(autouse=True)
def environment(monkeypatch, tmp_path, own_store):
    """Every test starts from the defaults, never from a developer's .env or shell."""
    for key in list(os.environ):
        if key.startswith(PREFIX + "_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv(f"{PREFIX}_INTERNAL_TOKEN", TOKEN)
    monkeypatch.setenv(f"{PREFIX}_ADMIN_TOKEN", ADMIN)
    # Every token is checked, whatever this project's default.
    monkeypatch.setenv(f"{PREFIX}_ANONYMOUS_READS", "false")
    monkeypatch.setenv(f"{PREFIX}_{SETTING}", own_store.setting)
    monkeypatch.setenv(f"{PREFIX}_INTERNAL_READ_TIMEOUT", "1.0")
    # One host, whatever this project's default: several hosts need TLS (test_tls.py).
    monkeypatch.setenv(f"{PREFIX}_TRUSTED_CLIENTS", "")
    monkeypatch.chdir(tmp_path)


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
def token(internal_service):
    """An API token with every scope, for the service of the test."""
    return internal_service.token()


@pytest.fixture
def client(app, token):
    """The API's test client, every request sent with a valid bearer token."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


@pytest.fixture
def anonymous(app):
    """The API's test client without any token."""
    return app.test_client()


@pytest.fixture
def spawn():
    """Start real processes; every one is stopped at the end, even when the test fails.

    log=PATH sends the process's stdout and stderr to that file instead of pipes.
    """
    processes = []

    def start(args, env=None, log=None, **kwargs):
        full_env = {**os.environ, **(env or {})}
        output = open(log, "w", encoding="utf-8") if log else subprocess.PIPE  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, *args],
            env=full_env,
            stdout=output,
            stderr=subprocess.STDOUT if log else subprocess.PIPE,
            text=True,
            **kwargs,
        )
        process.log = output if log else None
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
        for stream in (process.stdout, process.stderr, process.log):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Certificates made by deploy/pki.sh: ours, another CA's, and a misnamed server's."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def start_api(spawn, tmp_path):
    """The API under real gunicorn on a free loopback port, with HARDEN set as given."""

    def start(harden, **settings):
        port = free_port()
        env = {f"{PREFIX}_PUBLIC_PORT": str(port), f"{PREFIX}_WORKERS": "1"}
        env[f"{PREFIX}_HARDEN"] = harden
        env.update({f"{PREFIX}_{key}": str(value) for key, value in settings.items()})
        process = spawn(
            ["-m", "gunicorn", "-c", "python:{{ cookiecutter.__package }}.gunicorn_api"],
            env=env,
            cwd=tmp_path,
        )
        wait_for_port(port, process=process)
        return port

    return start
