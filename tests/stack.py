"""A baked project's two servers as real processes on loopback ports.

The browser and header-audit tests talk to this: the internal service as
`python -m PACKAGE.internal`, and the API under gunicorn with the project's own
gunicorn settings, as `honcho start` runs them. The API is loaded through a
small wrapper module that adds one route raising an exception, because a real
500 needs a fault and the audit must see the headers of a 500 too.
"""

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import clean_env

FAULT_PATH = "/api/v1/audit-fault"

WRAPPER = '''\
"""The project's app, plus one route that fails, for the header audit's 500."""

from {package}.api import create_app as _create_app


def _fault():
    raise RuntimeError("a deliberate fault for the header audit")


def create_app():
    app = _create_app()
    app.add_url_rule("{fault_path}", "audit_fault", _fault)
    return app
'''


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    """Start with start(), stop with stop(); stop() is safe after a failed start."""

    def __init__(self, project_dir, package, work_dir, harden):
        self.project_dir = Path(project_dir)
        self.package = package
        self.work_dir = Path(work_dir)
        self.harden = harden
        self.public_port = free_port()
        self.internal_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.public_port}"
        self.processes = []

    def _env(self):
        prefix = self.package.upper()
        settings = {
            "HARDEN": "true" if self.harden else "false",
            "PUBLIC_PORT": self.public_port,
            "INTERNAL_PORT": self.internal_port,
            "INTERNAL_TOKEN": secrets.token_urlsafe(32),
            "STATE_DIR": self.work_dir / "state",
            "WORKERS": 2,
            "LOG_LEVEL": "WARNING",
        }
        env = clean_env()
        env.update({f"{prefix}_{key}": str(value) for key, value in settings.items()})
        env["PYTHONPATH"] = os.pathsep.join([str(self.work_dir), str(self.project_dir / "src")])
        return env

    def _spawn(self, name, args, env):
        log = open(self.work_dir / f"{name}.log", "w", encoding="utf-8")
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=self.work_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        process.log = log
        process.name = name
        self.processes.append(process)
        return process

    def _wait_for(self, process, port, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"{process.name} exited early:\n{self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"{process.name} not listening after {timeout}s:\n{self.logs()}")

    def start(self):
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "audit_app.py").write_text(
            WRAPPER.format(package=self.package, fault_path=FAULT_PATH), encoding="utf-8"
        )
        env = self._env()
        internal = self._spawn("internal", ["-m", f"{self.package}.internal"], env)
        self._wait_for(internal, self.internal_port)
        api = self._spawn(
            "api",
            [
                "-m",
                "gunicorn",
                "-c",
                f"python:{self.package}.gunicorn_api",
                "audit_app:create_app()",
            ],
            env,
        )
        self._wait_for(api, self.public_port)
        return self

    def request(self, method, path, payload=None):
        """A JSON request from the test itself, to seed or check data."""
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as response:  # loopback only
            return response.status, json.loads(response.read())

    def logs(self):
        text = []
        for process in self.processes:
            process.log.flush()
            path = self.work_dir / f"{process.name}.log"
            text.append(f"--- {process.name}\n{path.read_text(encoding='utf-8')[-5000:]}")
        return "\n".join(text)

    def stop(self):
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=15)
            process.log.close()
        self.processes = []
