"""A baked project's two servers as real processes on loopback ports.

The browser, header-audit and fault tests talk to this: the internal service as
`python -m PACKAGE.internal`, and the API under gunicorn with the project's own
gunicorn settings, as `honcho start` runs them. The API is loaded through a
small wrapper module that adds one route raising an exception, because a real
500 needs a fault and the audit must see the headers of a 500 too, and one
route naming the worker that answered, so a test can tell gunicorn's workers apart;
a request that carries WORKER_HEADER gets that worker's pid back in it, on any route.

Both servers get an INTERNAL_TOKEN and an ADMIN_TOKEN of their own per stack
(the API drops the second at start, as deployed). The admin command runs
against the stack (admin(), mint(), revoke()); request() sends a bearer token
with every scope, minted once per stack, unless told to send another or none.

The fault tests stop, kill and restart each server on its own; the internal
service can also be socket-activated the way systemd runs it, from a listening
socket this class holds across its restarts.
"""

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import msgpack
import psutil

from support.processes import clean_env, free_port, run, stop_process, wait_for, wait_for_port

FAULT_PATH = "/api/v1/audit-fault"
WORKER_PATH = "/api/v1/test-worker"
# Sent with a request, it comes back holding the pid of the worker that answered.
WORKER_HEADER = "X-Test-Worker"
# API workers of every stack unless its settings say otherwise: more than the
# project's default (2), so that tests that find each worker see several.
WORKERS = 3
# request()'s default: the stack's own token, with every scope.
STACK_TOKEN = object()

WRAPPER = '''\
"""The project's app, plus one route that fails, for the header audit's 500."""

import os

from flask import request

from {package}.api import create_app as _create_app


def _fault():
    raise RuntimeError("a deliberate fault for the header audit")


def _worker():
    return {{"pid": os.getpid()}}


def _name_the_worker(response):
    if request.headers.get("{worker_header}"):
        response.headers["{worker_header}"] = str(os.getpid())
    return response


def create_app():
    app = _create_app()
    app.add_url_rule("{fault_path}", "audit_fault", _fault)
    app.add_url_rule("{worker_path}", "test_worker", _worker)
    app.after_request(_name_the_worker)
    return app
'''

# Run with the project on the path: every scope of its contract, and a
# well-formed token (pattern and checksum) that nobody minted.
SCOPES = "from {package} import contract; print(*sorted(contract.scopes()))"
UNKNOWN_TOKEN = "from {package} import contract; print(contract.new_token())"

# Put the inherited socket on fd 3 and name our own pid, which exec keeps: what systemd does.
SOCKET_ACTIVATION = """\
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
os.execv(sys.executable, [sys.executable, "-m", sys.argv[2]])
"""


class Stack:
    """Start with start(), stop with stop(); stop() is safe after a failed start.

    settings: more PREFIX_* settings (name without the prefix -> value), for both servers;
    DATABASE_URL among them for a project with database=postgresql (else a STATE_DIR
    in work_dir holds its SQLite database).
    """

    def __init__(self, project_dir, package, work_dir, harden, settings=None):
        self.project_dir = Path(project_dir)
        self.package = package
        self.work_dir = Path(work_dir)
        self.harden = harden
        self.extra_settings = dict(settings or {})
        self.public_port = free_port()
        self.internal_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.public_port}"
        # One secret each for the life of the stack: a restarted server must still match.
        self.internal_token = secrets.token_urlsafe(32)
        self.admin_token = secrets.token_urlsafe(32)
        # API tokens: one per set of scopes asked for (token_with), and the ids of all minted.
        self._tokens = {}
        self._scopes = None
        self.token_ids = {}
        self.processes = []
        self.internal = None
        self.api = None
        # The listening socket of the internal service when this stack plays systemd.
        self.listener = None
        self._started = {}

    def _env(self):
        prefix = self.package.upper()
        settings = {
            "HARDEN": "true" if self.harden else "false",
            "PUBLIC_PORT": self.public_port,
            "INTERNAL_PORT": self.internal_port,
            "INTERNAL_TOKEN": self.internal_token,
            "ADMIN_TOKEN": self.admin_token,
            "WORKERS": WORKERS,
            "LOG_LEVEL": "WARNING",
            **self.extra_settings,
        }
        # A project with database=postgresql is given its DATABASE_URL in settings.
        if "DATABASE_URL" not in settings:
            settings["STATE_DIR"] = self.work_dir / "state"
        env = clean_env()
        env.update({f"{prefix}_{key}": str(value) for key, value in settings.items()})
        env["PYTHONPATH"] = os.pathsep.join([str(self.work_dir), str(self.project_dir / "src")])
        return env

    def _spawn(self, name, args, env, pass_fds=()):
        # A restarted server logs to a file of its own: internal, internal-2, ...
        count = self._started[name] = self._started.get(name, 0) + 1
        if count > 1:
            name = f"{name}-{count}"
        log = open(self.work_dir / f"{name}.log", "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=self.work_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=pass_fds,
        )
        process.log = log
        process.name = name
        self.processes.append(process)
        return process

    def start(self, socket_activated=False):
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "audit_app.py").write_text(
            WRAPPER.format(
                package=self.package,
                fault_path=FAULT_PATH,
                worker_path=WORKER_PATH,
                worker_header=WORKER_HEADER,
            ),
            encoding="utf-8",
        )
        self.start_internal(socket_activated)
        self.start_api()
        return self

    def start_internal(self, socket_activated=False):
        """Start the internal service and wait until it accepts our token.

        socket_activated: hand it a listening socket that this stack holds, as
        systemd's socket unit does; connections made while it is down then wait
        in the kernel's queue instead of being refused.
        """
        module = f"{self.package}.internal"
        if not socket_activated:
            self.internal = self._spawn("internal", ["-m", module], self._env())
            wait_for_port(self.internal, self.internal_port, self.logs)
        else:
            if self.listener is None:
                self.listener = socket.socket()
                self.listener.bind(("127.0.0.1", self.internal_port))
                self.listener.listen(128)  # the socket unit's Backlog=
            fd = self.listener.fileno()
            self.internal = self._spawn(
                "internal", ["-c", SOCKET_ACTIVATION, str(fd), module], self._env(), (fd,)
            )
        self._wait_for_token(self.internal)
        return self.internal

    def start_api(self):
        self.api = self._spawn(
            "api",
            [
                "-m",
                "gunicorn",
                "-c",
                f"python:{self.package}.gunicorn_api",
                "audit_app:create_app()",
            ],
            self._env(),
        )
        wait_for_port(self.api, self.public_port, self.logs)
        # The master (preload_app) listens before it has forked every worker.
        self.wait_for_workers(int(self.extra_settings.get("WORKERS", WORKERS)))
        return self.api

    def _wait_for_token(self, process, timeout=30.0):
        """The internal service is up when it answers the auth message (a held
        socket accepts connections before any process serves it)."""
        hello = msgpack.packb({"id": 0, "op": "auth", "token": self.internal_token})

        def answered():
            if process.poll() is not None:
                raise AssertionError(f"{process.name} exited early:\n{self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.internal_port), timeout=1) as conn:
                    conn.sendall(hello)
                    reply = _read_message(conn)
            except OSError:
                return False
            if reply.get("ok") is not True:
                raise AssertionError(f"the internal service refused our token: {reply}")
            return True

        if not wait_for(answered, timeout, 0.05):
            raise AssertionError(f"{process.name} not answering after {timeout}s:\n{self.logs()}")

    def api_workers(self):
        """The pids of the gunicorn workers now running under the API's master."""
        try:
            return {child.pid for child in psutil.Process(self.api.pid).children()}
        except psutil.NoSuchProcess:
            return set()

    def wait_for_workers(self, count, exclude=(), timeout=30.0):
        """Wait until count workers run, none of them in exclude; return their pids."""

        def workers():
            found = self.api_workers() - set(exclude)
            return found if len(found) == count and len(self.api_workers()) == count else None

        found = wait_for(workers, timeout, 0.05)
        if not found:
            raise AssertionError(f"not {count} API workers after {timeout}s:\n{self.logs()}")
        return found

    def stop_internal(self):
        stop_process(self.internal)

    def stop_api(self):
        stop_process(self.api)

    def kill_internal(self):
        """SIGKILL the internal service and reap it: a crash, nothing cleaned up."""
        self.internal.send_signal(signal.SIGKILL)
        self.internal.wait(timeout=15)

    # ------------------------------------------------------------ the admin command

    def python(self, code, timeout=60):
        """Run code in this stack's environment (the project on the path); its stdout."""
        command = [sys.executable, "-c", code.format(package=self.package)]
        return run(command, env=self._env(), cwd=self.work_dir, timeout=timeout).stdout

    def admin(self, *args, check=True, settings=None):
        """Run `python -m PACKAGE.admin ARGS` against this stack, with its settings
        (and more, name without the prefix -> value); the finished process."""
        env = self._env()
        prefix = self.package.upper()
        env.update({f"{prefix}_{key}": str(value) for key, value in (settings or {}).items()})
        command = [sys.executable, "-m", f"{self.package}.admin", *map(str, args)]
        return run(command, env=env, cwd=self.work_dir, check=check, timeout=60)

    def scopes(self):
        """Every scope the project's contract knows (items:read, items:write, ...)."""
        if self._scopes is None:
            self._scopes = self.python(SCOPES).split()
        return self._scopes

    def mint(self, scopes=None, name="test", days=None):
        """A new API token from the admin command (default: every scope): the last
        line of its stdout. Its id is kept in token_ids, for revoke()."""
        args = ["tokens", "create", "--name", name]
        for scope in self.scopes() if scopes is None else scopes:
            args += ["--scope", scope]
        if days is not None:
            args += ["--expires-days", days]
        lines = self.admin(*args).stdout.splitlines()
        made = re.match(r"id (\d+): ", lines[0])
        assert made and len(lines) == 2, lines
        self.token_ids[lines[-1]] = int(made.group(1))
        return lines[-1]

    def revoke(self, token):
        """Revoke a token minted here, with the admin command."""
        return self.admin("tokens", "revoke", self.token_ids[token])

    def unknown_token(self):
        """A token of the right form (its checksum holds) that was never minted."""
        return self.python(UNKNOWN_TOKEN).strip()

    def token_with(self, *scopes):
        """A token with exactly these scopes, minted on first use and kept for the stack."""
        key = frozenset(scopes)
        if key not in self._tokens:
            self._tokens[key] = self.mint(sorted(key), name=" ".join(sorted(key)))
        return self._tokens[key]

    @property
    def token(self):
        """The stack's own API token, with every scope: what request() sends."""
        return self.token_with(*self.scopes())

    def trip_brake(self, attempts=50, headers=None):
        """Fail authentication (a well-formed, unknown token) until the internal
        service's brake refuses this client; the 429 answer. attempts: at most
        that many (more than AUTH_FAILURES, which the stack's settings may lower)."""
        unknown = self.unknown_token()
        for _ in range(attempts):
            answer = self.fetch("GET", "/api/v1/items", token=unknown, headers=headers)
            if answer.status != 401:
                assert answer.status == 429, (answer.status, answer.json)
                return answer
        raise AssertionError(f"no 429 after {attempts} failed authentications")

    def bearer(self, token=STACK_TOKEN):
        """The Authorization header for token (default the stack's own; None: no header)."""
        if token is STACK_TOKEN:
            token = self.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    # ------------------------------------------------------------ requests

    def fetch(self, method, path, payload=None, *, token=STACK_TOKEN, headers=None):
        """One request, whatever its answer: status, headers, body (bytes) and json (the
        parsed body of a JSON answer, else None)."""
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for name, value in {**self.bearer(token), **(headers or {})}.items():
            req.add_header(name, value)
        try:
            response = urllib.request.urlopen(req, timeout=10)  # loopback only
        except urllib.error.HTTPError as error:
            response = error
        with response:
            body = response.read()
        is_json = response.headers.get_content_type() == "application/json"
        return SimpleNamespace(
            status=response.status,
            headers=response.headers,
            body=body,
            json=json.loads(body) if body and is_json else None,
        )

    def request(self, method, path, payload=None, *, token=STACK_TOKEN):
        """A JSON request from the test itself, to seed or check data: (status, body).
        An error status fails the test. token: another one to send, or None for none."""
        answer = self.fetch(method, path, payload, token=token)
        assert answer.status < 400, (method, path, answer.status, answer.json)
        return answer.status, answer.json

    def logs(self):
        text = []
        for process in self.processes:
            process.log.flush()
            path = self.work_dir / f"{process.name}.log"
            text.append(f"--- {process.name}\n{path.read_text(encoding='utf-8')[-5000:]}")
        return "\n".join(text)

    def stop(self):
        for process in reversed(self.processes):
            # A stopped process cannot act on SIGTERM until it is continued.
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
            stop_process(process)
            process.log.close()
        self.processes = []
        if self.listener is not None:
            self.listener.close()
            self.listener = None


def _read_message(conn):
    """One MessagePack message of the internal protocol."""
    unpacker = msgpack.Unpacker()
    while True:
        for message in unpacker:
            return message
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionResetError("closed inside a message")
        unpacker.feed(chunk)
