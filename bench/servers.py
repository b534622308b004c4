"""The servers the bench loads, on loopback, each in a group of its own.

Groups: "stack" (internal service + API, harden on), "plain" (a second API on
the same internal service, harden off), "metered" (a second stack with metrics
on), "sync" (bare Flask under stock gunicorn: sync workers, the reference),
"bare" (the same bare Flask under the project's worker class, threads and
keep-alive), "sqlalchemy" (bench/sqlalchemy_app.py under those same settings)
and, unless --database sqlite, "stack-pg": the stack of a second project baked
with database=postgresql, on a private PostgreSQL cluster whose server is
counted in the group's CPU and PSS. Every process is started in a session of
its own and stopped at the end, whatever happens; the cluster is stopped and
removed then too.
"""

import contextlib
import importlib.util
import os
import secrets
import shutil
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
        # group -> [(pid, name)]: processes started by others (the PostgreSQL server),
        # measured with the group but stopped by their owner's cleanup.
        self.adopted = {}
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

    def adopt(self, group, pid, name):
        self.adopted.setdefault(group, []).append((pid, name))

    def tree(self, group, name=None):
        """psutil processes of a group: every master and its workers."""
        found = []
        started = [(process.pid, process.name) for process in self.groups.get(group, [])]
        for pid, named in started + self.adopted.get(group, []):
            if name is not None and named != name:
                continue
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(pid)
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


def bake(work, template, database="sqlite"):
    cookiecutter(
        str(template), no_input=True, output_dir=str(work), extra_context={"database": database}
    )
    return work / "myservice"


def stack_env(paths, internal_port, store):
    """os.environ less any setting of ours, with PYTHONPATH paths and a stack's settings
    (secrets of its own, anonymous reads) on internal_port, its store where store says."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(PREFIX + "_")}
    env["PYTHONPATH"] = os.pathsep.join(str(path) for path in paths)
    settings = {
        "INTERNAL_TOKEN": secrets.token_urlsafe(32),
        "ADMIN_TOKEN": secrets.token_urlsafe(32),
        "ANONYMOUS_READS": "true",
        "INTERNAL_PORT": str(internal_port),
        "LOG_LEVEL": "WARNING",
        **store,
    }
    return env | {f"{PREFIX}_{name}": value for name, value in settings.items()}


def environments(work, project, overrides, ports):
    """The environment of each stack: "stack", and "metered" with its own internal
    service, state and metrics directory."""
    paths = [work, BENCH, project / "src"]
    state = {"STATE_DIR": str(work / "state")}
    envs = {"stack": {**stack_env(paths, ports["internal"], state), **overrides}}
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


def cluster_class(project):
    """The Cluster of the baked project's tests (it imports only the standard library,
    psycopg and pytest), loaded by path: the bench runs it as those tests do."""
    path = project / "tests" / "backend_postgresql.py"
    spec = importlib.util.spec_from_file_location("bench_backend_postgresql", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Cluster


def start_cluster(processes, project):
    """A private cluster (initdb in /tmp, unix socket only) with an empty database, its
    server measured with "stack-pg"; stopped and removed at the end: the database's conninfo."""
    cluster = cluster_class(project)("bastion-bench")
    processes.cleanups.append(lambda: stop_cluster(cluster))
    if cluster.bin is None:
        raise SystemExit("bench: initdb and pg_ctl are missing (postgresql), or --database sqlite")
    cluster.start()
    pid = int((cluster.directory / "data" / "postmaster.pid").read_text().split()[0])
    processes.adopt("stack-pg", pid, "postgresql")
    return cluster.create("bench")


def stop_cluster(cluster):
    """Stopped even when pg_ctl gave up on a server that came up later, or when a
    Ctrl-C already stopped it; its directory removed either way."""
    cluster.started = (cluster.directory / "data" / "postmaster.pid").exists()
    with contextlib.suppress(RuntimeError):
        cluster.stop()
    shutil.rmtree(cluster.directory, ignore_errors=True)


def start_postgresql(processes, work, template, overrides):
    """A project baked with database=postgresql, its stack on a private cluster, answering:
    its direct URL and env. Its package is PACKAGE too: only its own src is on its path."""
    project = bake(work / "postgresql", template, "postgresql")
    conninfo = start_cluster(processes, project)
    internal, port = free_port(), free_port()
    env = {**stack_env([project / "src"], internal, {"DATABASE_URL": conninfo}), **overrides}
    start_stack(processes, "stack-pg", env, port)
    url = f"http://127.0.0.1:{port}"
    wait_for(url + "/api/v1/ready")
    return url, env
