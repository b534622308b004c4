"""Helpers the test modules share: ports, real processes, and a threaded internal service.

The store of each test comes from backend_{{ cookiecutter.database }}.py (conftest.py's
`own_store` fixture): its setting is in the test's environment, and the helpers that
start something using it make it ready first (ready_store).
"""

import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from {{ cookiecutter.__package }} import config, contract, tls
from {{ cookiecutter.__package }}.internal import migrations
from {{ cookiecutter.__package }}.internal.runner import Runner
from {{ cookiecutter.__package }}.internal.server import InternalServer
from {{ cookiecutter.__package }}.internal.storage import SETTING, Storage  # noqa: F401 - tests use SETTING
from {{ cookiecutter.__package }}.internal_client import InternalClient

from . import backend_{{ cookiecutter.database }} as backend  # noqa: F401 - conftest and tests use it

PREFIX = config.PREFIX
# The shared INTERNAL_TOKEN and the ADMIN_TOKEN of every test's settings.
TOKEN = secrets.token_urlsafe(32)
ADMIN = secrets.token_urlsafe(32)
PACKAGE = "{{ cookiecutter.__package }}"
ALL_SCOPES = sorted(contract.scopes())


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, timeout=15.0, process=None):
    """Wait until something accepts on 127.0.0.1:port (bounded in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            log = getattr(process, "log", None)
            said = Path(log.name).read_text() if log else process.stderr.read()
            raise AssertionError(f"{process.args} exited early: {said}")
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


# The running test's store (conftest.py's `own_store` fixture sets it).
current_store = None


def ready_store():
    """The running test's store made ready (a PostgreSQL database is made on first
    use); the value of its setting."""
    return current_store.ready()


def open_storage(settings):
    """The store of SETTINGS as the service opens it: every unit's migrations applied."""
    ready_store()
    return Storage.from_settings(settings, migrations.schema())


def mint(storage, settings, scopes=None, days=30, name="test"):
    """A fresh API token, made straight in the store, as tokens.create makes it."""
    args = {"name": name, "scopes": list(scopes or ALL_SCOPES), "expires_days": days}
    return Runner(storage, settings=settings).run("tokens.create", args, role="admin")["token"]


def mint_over_the_wire(address, scopes=None, days=30):
    """A fresh API token, asked of a running service with the admin secret."""
    admin = InternalClient(address, ADMIN)
    try:
        args = {"name": "test", "scopes": list(scopes or ALL_SCOPES), "expires_days": days}
        return admin.call(contract.tokens.create, args)["token"]
    finally:
        admin.close()


def client_for(address, token=TOKEN, api_token=None, **options):
    """An InternalClient whose facade calls carry API_TOKEN."""
    client = InternalClient(address, token, **options)
    if api_token:
        client.caller = {"token": api_token}
    return client


def rows(storage, table="items"):
    """How many rows TABLE holds, read straight from the store."""
    with storage.transaction(write=False) as db:
        return db.one(f"SELECT count(*) AS n FROM {table}")["n"]  # noqa: S608 - a test's constant


class ThreadedService:
    """The real internal server, serving from a thread of the test process."""

    def __init__(self, settings, port=0):
        self.settings = settings
        self.storage = open_storage(settings)
        context = tls.server_context(settings)
        self.server = InternalServer("127.0.0.1", port, self.storage, settings, context)
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def token(self, scopes=None, **options):
        """A fresh API token for this service (every scope unless told)."""
        return mint(self.storage, self.settings, scopes, **options)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.storage.close()


def start_internal(spawn, log=None, **env):
    """`python -m PACKAGE.internal` with PREFIX_NAME=value for each of ENV; its output
    to the file LOG, for a process that serves many calls (a pipe nobody reads fills)."""
    ready_store()
    full = {f"{PREFIX}_{key}": str(value) for key, value in env.items()}
    return spawn(["-m", f"{PACKAGE}.internal"], env=full, log=log)


# Put the socket on fd 3 and set LISTEN_PID to our own pid, which exec keeps: what systemd does.
SOCKET_ACTIVATION = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); "
    "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
    f"os.execv(sys.executable, [sys.executable, '-m', '{PACKAGE}.internal'])"
)


def socket_activated(spawn, host):
    """The internal service started on a socket handed over as systemd does; (process, port)."""
    ready_store()
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.bind((host, 0))
    if host == "127.0.0.1":
        # A wildcard socket stays bound but never listening: nothing is exposed, even briefly.
        listener.listen()
    process = spawn(["-c", SOCKET_ACTIVATION, str(listener.fileno())], pass_fds=[listener.fileno()])
    port = listener.getsockname()[1]
    listener.close()
    return process, port


PROJECT_ROOT = Path(__file__).resolve().parents[1]
PKI = PROJECT_ROOT / "deploy" / "pki.sh"


def pki(directory, *args):
    """Run deploy/pki.sh --dir DIRECTORY ARGS; returns the completed process."""
    return subprocess.run(
        ["bash", str(PKI), "--dir", str(directory), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def pki_ok(directory, *args):
    result = pki(directory, *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return result.stdout


def openssl(*args):
    result = subprocess.run(
        ["openssl", *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def make_pki(base):
    """Our CA with a server and a client certificate, another CA with both, a misnamed server."""
    ours, other, misnamed = base / "tls", base / "other", base / "misnamed"
    pki_ok(ours, "ca")
    pki_ok(ours, "server", "127.0.0.1", "::1", "localhost")
    pki_ok(ours, "client", "api1")
    pki_ok(other, "ca")
    pki_ok(other, "server", "127.0.0.1")
    pki_ok(other, "client", "intruder")
    # Our CA, but a certificate for an address the client does not dial.
    misnamed.mkdir(mode=0o750)
    for name in ("ca.key", "ca.crt"):
        shutil.copy2(ours / name, misnamed / name)
    pki_ok(misnamed, "server", "127.0.0.9")
    return SimpleNamespace(ours=ours, other=other, misnamed=misnamed)


def tls_files(directory, name, ca_directory=None):
    """The three TLS settings for the pair DIRECTORY/NAME.{crt,key}."""
    return {
        "INTERNAL_TLS_CA": str((ca_directory or directory) / "ca.crt"),
        "INTERNAL_TLS_CERT": str(directory / f"{name}.crt"),
        "INTERNAL_TLS_KEY": str(directory / f"{name}.key"),
    }


def start_pair(spawn, work, **settings):
    """The internal service and the API under gunicorn, as honcho runs them, logging to
    WORK/internal.log and WORK/api.log; returns the API's and the internal ports."""
    ready_store()
    ports = {"PUBLIC_PORT": free_port(), "INTERNAL_PORT": free_port()}
    env = {f"{PREFIX}_{key}": str(value) for key, value in {**ports, **settings}.items()}
    env[f"{PREFIX}_WORKERS"] = env.get(f"{PREFIX}_WORKERS", "2")
    internal = spawn(["-m", f"{PACKAGE}.internal"], env=env, log=work / "internal.log", cwd=work)
    wait_for_port(ports["INTERNAL_PORT"], process=internal)
    gunicorn = ["-m", "gunicorn", "-c", f"python:{PACKAGE}.gunicorn_api"]
    api = spawn(gunicorn, env=env, log=work / "api.log", cwd=work)
    wait_for_port(ports["PUBLIC_PORT"], process=api)
    return ports["PUBLIC_PORT"], ports["INTERNAL_PORT"]
