"""The servers the bench loads, on loopback, each in a group of its own.

Groups: "stack" (internal service + API, harden on), "plain" (a second API on
the same internal service, harden off), "metered" (a second stack with metrics
on), "sync" (bare Flask under stock gunicorn: sync workers, the reference),
"bare" (the same bare Flask under the project's worker class, threads and
keep-alive) and "sqlalchemy" (bench/sqlalchemy_app.py under those same
settings). Every process is started in a session of its own and stopped at the
end, whatever happens.
"""

import contextlib
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
from cookiecutter.main import cookiecutter

BENCH = Path(__file__).resolve().parent
PACKAGE = "myservice"
PREFIX = PACKAGE.upper()

BARE_APP = """\
from flask import Flask

app = Flask(__name__)


@app.get("/api/v1/hello")
def hello():
    return {"status": "ok"}
"""

# Stock gunicorn, as a Flask tutorial runs it: sync workers (one request at a
# time each, and every connection closed after its answer), the project's count.
SYNC_CONFIG = """\
from {package} import gunicorn_api as _project

workers = _project.workers
worker_class = "sync"
bind = ["127.0.0.1:{port}"]
wsgi_app = "{app}"
worker_tmp_dir = "/dev/shm"
control_socket_disable = True
loglevel = "warning"
"""

# The project's own worker count, class, threads and keep-alive.
PROJECT_WORKERS_CONFIG = """\
from {package} import gunicorn_api as _project

workers = _project.workers
worker_class = _project.worker_class
threads = getattr(_project, "threads", 1)
keepalive = getattr(_project, "keepalive", 2)
bind = ["127.0.0.1:{port}"]
wsgi_app = "{app}"
worker_tmp_dir = "/dev/shm"
control_socket_disable = True
loglevel = "warning"
"""

GUNICORN_API = ["-m", "gunicorn", "-c", f"python:{PACKAGE}.gunicorn_api"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url, deadline_s=30.0, cafile=None):
    """Until url answers 200 (over TLS trusting only cafile, if given)."""
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as answer:  # loopback
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"bench: {url} did not answer within {deadline_s}s")


class Processes:
    """Every server started here, by group, stopped at the end whatever happens."""

    def __init__(self, work):
        self.work = work
        self.groups = {}
        # Called once every process has ended (what they used is removed then).
        self.cleanups = []

    def start(self, group, args, env, name, stop_signal=signal.SIGTERM):
        log = open(self.work / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
        process = subprocess.Popen(
            args,
            env=env,
            cwd=self.work,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process.log, process.name, process.stop_signal = log, name, stop_signal
        self.groups.setdefault(group, []).append(process)
        return process

    def tree(self, group, name=None):
        """psutil processes of a group: every master and its workers."""
        found = []
        for process in self.groups.get(group, []):
            if name is not None and process.name != name:
                continue
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(process.pid)
                found += [root, *root.children(recursive=True)]
        return found

    def cpu_seconds(self, groups, name=None):
        """User plus system CPU of the groups' processes (only the one called name, if given)."""
        total = 0.0
        for group in groups:
            for process in self.tree(group, name):
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = process.cpu_times()
                    total += times.user + times.system
        return total

    def pss_mb(self, group):
        total = 0
        for process in self.tree(group):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_full_info().pss
        return total / 2**20

    def stop(self):
        """Each master gets its stop signal (gunicorn SIGTERM, nginx SIGQUIT); one that
        has not ended 15 s later is killed with its whole session (its workers too)."""
        processes = [process for group in self.groups.values() for process in group]
        for process in processes:
            if process.poll() is None:
                process.send_signal(process.stop_signal)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
            process.log.close()
        for cleanup in self.cleanups:
            cleanup()


def bake(work, template):
    cookiecutter(str(template), no_input=True, output_dir=str(work))
    return work / "myservice"


def environments(work, project, overrides, ports):
    """The environment of each stack: "stack", and "metered" with its own internal
    service, state and metrics directory."""
    base = {key: value for key, value in os.environ.items() if not key.startswith(PREFIX + "_")}
    base["PYTHONPATH"] = os.pathsep.join([str(work), str(BENCH), str(project / "src")])
    settings = {
        f"{PREFIX}_INTERNAL_TOKEN": secrets.token_urlsafe(32),
        f"{PREFIX}_ADMIN_TOKEN": secrets.token_urlsafe(32),
        f"{PREFIX}_ANONYMOUS_READS": "true",
        f"{PREFIX}_INTERNAL_PORT": str(ports["internal"]),
        f"{PREFIX}_STATE_DIR": str(work / "state"),
        f"{PREFIX}_LOG_LEVEL": "WARNING",
    }
    envs = {"stack": {**base, **settings, **overrides}}
    envs["metered"] = {
        **envs["stack"],
        f"{PREFIX}_INTERNAL_PORT": str(ports["internal-metered"]),
        f"{PREFIX}_STATE_DIR": str(work / "state-metered"),
        f"{PREFIX}_METRICS_PORT": str(ports["metrics"]),
        f"{PREFIX}_METRICS_DIR": str(work / "metrics"),
    }
    return envs


def start_stack(processes, group, env, port):
    """An internal service and its API (harden on) under env, as the group."""
    python = sys.executable
    processes.start(group, [python, "-m", f"{PACKAGE}.internal"], env, f"internal-{group}")
    time.sleep(0.5)
    api_env = {**env, f"{PREFIX}_PUBLIC_PORT": str(port), f"{PREFIX}_HARDEN": "true"}
    processes.start(group, [python, *GUNICORN_API], api_env, f"api-{group}")


def start_flask(processes, work, group, env, port, config, app):
    """A Flask app that is not the project's, under gunicorn with config."""
    (work / f"{group}_conf.py").write_text(config.format(package=PACKAGE, port=port, app=app))
    # HARDEN off, so that importing the project's settings leaves gunicorn as it is.
    env = {**env, f"{PREFIX}_HARDEN": "false"}
    command = [sys.executable, "-m", "gunicorn", "-c", f"python:{group}_conf"]
    processes.start(group, command, env, group)


def start_servers(processes, project, work, overrides, sqlalchemy_db):
    """Every group, started and answering: the direct URL of each, and the stacks' envs."""
    names = ("internal", "internal-metered", "metrics", "stack", "metered", "plain")
    ports = {name: free_port() for name in (*names, "sync", "bare", "sqlalchemy")}
    envs = environments(work, project, overrides, ports)
    for group in ("stack", "metered"):
        start_stack(processes, group, envs[group], ports[group])
    plain_env = {**envs["stack"], f"{PREFIX}_PUBLIC_PORT": str(ports["plain"])}
    plain_env[f"{PREFIX}_HARDEN"] = "false"
    processes.start("plain", [sys.executable, *GUNICORN_API], plain_env, "api-plain")
    (work / "bare_app.py").write_text(BARE_APP)
    flask_env = {**envs["stack"], "BENCH_SQLALCHEMY_DATABASE": str(sqlalchemy_db)}
    apps = {
        "sync": (SYNC_CONFIG, "bare_app:app"),
        "bare": (PROJECT_WORKERS_CONFIG, "bare_app:app"),
        "sqlalchemy": (PROJECT_WORKERS_CONFIG, "sqlalchemy_app:create_app()"),
    }
    for group, (config, app) in apps.items():
        start_flask(processes, work, group, flask_env, ports[group], config, app)
    urls = {group: f"http://127.0.0.1:{ports[group]}" for group in (*names[3:], *apps)}
    for group in ("stack", "metered", "plain"):
        wait_for(urls[group] + "/api/v1/ready")
    for group in ("sync", "bare"):
        wait_for(urls[group] + "/api/v1/hello")
    wait_for(f"http://127.0.0.1:{ports['metrics']}/metrics")
    return urls, envs


def mint(env):
    """A token with every scope, from the project's own admin command."""
    command = [sys.executable, "-m", f"{PACKAGE}.admin", "tokens", "create", "--name", "bench"]
    command += ["--scope", "items:read", "--scope", "items:write"]
    made = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    if made.returncode != 0:
        raise SystemExit(f"bench: the admin command failed: {made.stderr.strip()}")
    return made.stdout.splitlines()[-1]


def seed(url, token):
    """One item written through the API: its path."""
    request = urllib.request.Request(
        url + "/api/v1/items",
        data=b'{"title": "read by the benchmark", "body": "one row, read again and again"}',
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # loopback only
        return answer.headers["Location"]
