"""Running, waiting for and stopping child processes, and finding free ports.

Every wait is bounded, and every failure says what was run and what it printed.
"""

import contextlib
import os
import select
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

# How much of a command's output a failure message shows, from the end.
OUTPUT_TAIL = 20000


def clean_env():
    """The environment for child processes: ours, less what would redirect Python."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(name, None)
    return env


def _tail(output):
    """The end of a child's output, which a timeout may hand back as bytes or None."""
    if isinstance(output, bytes):  # POSIX hands back the raw partial output
        output = output.decode("utf-8", "replace")
    return (output or "")[-OUTPUT_TAIL:]


def run(cmd, *, check=True, timeout=120, **kwargs):
    """Run cmd to its end, no standard input, its output captured as text.

    check: a non-zero exit status fails the test, with the command and its
    output. Running past timeout seconds always fails the test that way.
    The environment is clean_env() unless env is given.
    """
    argv = [str(part) for part in cmd]
    kwargs.setdefault("env", clean_env())
    if "input" not in kwargs:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
    try:
        proc = subprocess.run(
            argv, check=False, capture_output=True, text=True, timeout=timeout, **kwargs
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(
            f"{shlex.join(argv)} timed out after {timeout}s\n"
            f"stdout:\n{_tail(expired.stdout)}\nstderr:\n{_tail(expired.stderr)}"
        )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{shlex.join(argv)} exited {proc.returncode}\n"
            f"stdout:\n{_tail(proc.stdout)}\nstderr:\n{_tail(proc.stderr)}"
        )
    return proc


def code_and_output(cmd, **kwargs):
    """run() for a checker whose verdict the test asserts: (exit status, stdout + stderr)."""
    proc = run(cmd, check=False, **kwargs)
    return proc.returncode, proc.stdout + proc.stderr


def wait_for(predicate, timeout, interval=0.1):
    """Poll until predicate() is true; its last value either way."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def port_open(address, port):
    """Whether a TCP connection to address:port is accepted now."""
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(process, port, logs, *, address="127.0.0.1", name=None, timeout=30.0):
    """Wait until the server process accepts connections on address:port.

    Its exit, or the timeout, fails with logs(): what the server wrote.
    """
    name = name or getattr(process, "name", "the server")

    def listening():
        if process.poll() is not None:
            raise AssertionError(f"{name} exited early:\n{logs()}")
        return port_open(address, port)

    if not wait_for(listening, timeout, 0.05):
        raise AssertionError(
            f"{name} not listening on {address}:{port} after {timeout}s:\n{logs()}"
        )


def free_port(*, also_v6=False):
    """A loopback TCP port free now on 127.0.0.1, and with also_v6 on ::1 too."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if not also_v6:
            return port
        try:
            with socket.socket(socket.AF_INET6) as sock:
                sock.bind(("::1", port))
        except OSError:
            continue
        return port
    raise AssertionError("no port free on both 127.0.0.1 and ::1")


def read_line(proc, timeout):
    """One line of a child's stdout, or None after timeout seconds."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().strip() if ready else None


def process_alive(pid):
    """Running and not a zombie (an orphan may wait to be reaped by init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(") ", 1)[1][:1] != "Z"


def stop_processes(processes, *, sig=signal.SIGTERM, timeout=15.0, kill_group=False):
    """Send sig to each child still running, all at once, and reap them all.

    One that outlives timeout is SIGKILLed: itself, or with kill_group its
    whole process group (a child started with start_new_session leads one).
    """
    processes = [process for process in processes if process is not None]
    for process in processes:
        if process.poll() is None:
            process.send_signal(sig)
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            if kill_group:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
            process.wait(timeout=timeout)


def stop_process(process, **options):
    """stop_processes() for one child (or None); the same options."""
    stop_processes([process], **options)
