"""Throwaway network namespaces, and ways to run, listen, probe and scan in them.

topology() makes "server", "trusted" and "outsider", which reach each other
over a bridge that lives in a fourth, "switch"; netns() makes one empty
namespace. Nothing touches the host's network namespace. All addresses come
from the documentation ranges 192.0.2.0/24 and 2001:db8::/32; all names carry
a random suffix and are removed in finally. All of it needs root.
"""

import contextlib
import json
import secrets
import subprocess
import sys
import time
from typing import NamedTuple

import pytest

from support.processes import read_line, run
from support.tools import tool


class Host(NamedTuple):
    v4: str
    v6: str


ADDRESSES = {
    "server": Host("192.0.2.1", "2001:db8:1::1"),
    "trusted": Host("192.0.2.20", "2001:db8:1::20"),
    "outsider": Host("192.0.2.30", "2001:db8:1::30"),
}


# Per connect attempt; a SYN lost on the way is sent again after 1 s.
SCAN_WINDOW = 1.5
# The ports are split among this many processes, each with its own limit on
# open files (raising the hard limit needs CAP_SYS_RESOURCE, which a container
# may lack), so that most of them are in flight at once.
SCAN_WORKERS = 4
SCAN_TIME_LIMIT = 60  # seconds per scan

# Runs inside a namespace: "scan HOST FIRST LAST WINDOW" connects to each TCP
# port in FIRST..LAST with as many non-blocking sockets at once as the limit on
# open files allows; "probe TIMEOUT HOST PORT [HOST PORT...]" tries each
# port, all at the same time, and prints one JSON list of results.
NET_TOOL = r"""
import collections, errno, json, resource, select, socket, sys, time

def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET

def probe(host, port, timeout):
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            try:
                banner = conn.recv(64).decode().strip()
            except OSError:
                banner = ""
            return "open " + banner
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return "error " + (errno.errorcode.get(exc.errno) or str(exc))

def scan(host, first, last, window):
    family = family_of(host)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = last - first + 1 + 64
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
        except (ValueError, OSError):
            want = hard
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    in_flight = want - 64
    poller = select.epoll()
    waiting = {}  # fd -> (socket, port)
    deadlines = collections.deque()  # (deadline, fd), in order
    result = {"open": [], "refused": [], "filtered": 0, "other": {}}
    start = time.monotonic()

    def done(fd, outcome):
        sock, port = waiting.pop(fd)
        poller.unregister(fd)
        sock.close()
        if outcome == 0:
            result["open"].append(port)
        elif outcome == errno.ECONNREFUSED:
            result["refused"].append(port)
        elif outcome is None:
            result["filtered"] += 1
        else:
            result["other"][port] = errno.errorcode.get(outcome, str(outcome))

    port = first
    while port <= last or waiting:
        batch = 0
        while port <= last and len(waiting) < in_flight and batch < 512:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            code = sock.connect_ex((host, port))
            if code == errno.EINPROGRESS:
                waiting[sock.fileno()] = (sock, port)
                poller.register(sock.fileno(), select.EPOLLOUT | select.EPOLLERR)
                deadlines.append((time.monotonic() + window, sock.fileno()))
            else:
                waiting[sock.fileno()] = (sock, port)
                poller.register(sock.fileno(), 0)
                done(sock.fileno(), code)
            port += 1
            batch += 1
        now = time.monotonic()
        if port <= last and len(waiting) < in_flight:
            timeout = 0
        elif deadlines:
            timeout = max(0.0, min(deadlines[0][0] - now, 0.2))
        else:
            timeout = 0
        for fd, _ in poller.poll(timeout):
            if fd in waiting:
                code = waiting[fd][0].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                done(fd, code)
        now = time.monotonic()
        while deadlines and deadlines[0][0] <= now:
            _, fd = deadlines.popleft()
            if fd in waiting:
                done(fd, None)
    result["seconds"] = round(time.monotonic() - start, 2)
    result["in_flight"] = in_flight
    return result

if sys.argv[1] == "scan":
    first, last = int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(scan(sys.argv[2], first, last, float(sys.argv[5]))))
else:
    from concurrent.futures import ThreadPoolExecutor
    timeout, pairs = float(sys.argv[2]), sys.argv[3:]
    targets = [(pairs[i], int(pairs[i + 1])) for i in range(0, len(pairs), 2)]
    with ThreadPoolExecutor(len(targets)) as pool:
        results = pool.map(lambda target: probe(*target, timeout), targets)
        print(json.dumps(list(results)))
"""


# Runs in the server namespace: accept on every (name, address, port) and
# answer "name port", so a client knows which listener it reached.
LISTENER = r"""
import json, selectors, socket, sys
selector = selectors.DefaultSelector()
for name, address, port in json.loads(sys.argv[1]):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    server.bind((address, port))
    server.listen(128)
    server.setblocking(False)
    selector.register(server, selectors.EVENT_READ, f"{name} {port}\n".encode())
print("ready", flush=True)
while True:
    for key, _ in selector.select():
        try:
            conn, _ = key.fileobj.accept()
        except BlockingIOError:
            continue
        try:
            conn.setblocking(True)
            conn.settimeout(1)
            conn.sendall(key.data)
        except OSError:
            pass
        finally:
            conn.close()
"""


def net_tool(*args):
    """argv that runs NET_TOOL with args."""
    return [sys.executable, "-c", NET_TOOL, *map(str, args)]


class Scan(NamedTuple):
    open: set
    refused: list
    filtered: int
    other: dict
    seconds: float
    in_flight: int  # sockets connecting at once, all workers together


def assert_scan_finds(topo, source, family, expected, label, capsys):
    """A full scan of the server from SOURCE over IPv4 or IPv6 (FAMILY), printed under
    LABEL: the ports in EXPECTED open, every other one dropped (not refused), in time."""
    result = topo.scan(source, topo.address("server", family))
    with capsys.disabled():
        print(
            f"\n[{label}] {source} -> server IPv{family}: "
            f"open {sorted(result.open)}; {result.filtered} filtered, "
            f"{len(result.refused)} refused, {len(result.other)} other; {result.seconds} s, "
            f"{result.in_flight} connects in flight"
        )
    assert result.seconds < SCAN_TIME_LIMIT
    assert result.open == expected
    # Dropped, not refused: the decoys listen, so only the firewall can hide them.
    assert result.refused == []
    assert result.other == {}
    assert result.filtered == 65535 - len(expected)


class Topology:
    """Network namespaces by role, their addresses, and ways to run things in them."""

    def __init__(self, suffix, names, addresses):
        self.suffix = suffix
        self.names = names  # role -> namespace name
        self.addresses = addresses  # role -> Host(v4, v6)
        self.ip = tool("ip", "iproute2")
        # role -> argv prefix that runs a command in that role's namespaces
        self.prefix = {role: [self.ip, "netns", "exec", name] for role, name in names.items()}

    def address(self, role, family):
        return getattr(self.addresses[role], f"v{family}")

    def cmd(self, role, *args):
        return [*self.prefix[role], *map(str, args)]

    def run(self, role, *args, **kwargs):
        return run(self.cmd(role, *args), **kwargs)

    def popen(self, role, *args, **kwargs):
        return subprocess.Popen(self.cmd(role, *args), **kwargs)

    def probe(self, role, host, port, timeout=2.0):
        """'open BANNER', 'refused', 'timeout' or 'error ...' for one TCP connect."""
        return self.probe_many(role, [(host, port)], timeout)[0]

    def probe_many(self, role, targets, timeout=2.0):
        """probe() for each (host, port) in targets, all at once."""
        pairs = [item for target in targets for item in target]
        command = net_tool("probe", timeout, *pairs)
        proc = self.run(role, *command, timeout=timeout + 30)
        return json.loads(proc.stdout)

    def scan(self, role, host):
        """TCP connect scan of ports 1-65535 of host, from role's namespace."""
        start = time.monotonic()
        size = -(-65535 // SCAN_WORKERS)
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        workers = []
        try:
            for first in range(1, 65536, size):
                last = min(first + size - 1, 65535)
                command = net_tool("scan", host, first, last, SCAN_WINDOW)
                workers.append(self.popen(role, *command, **pipes))
            outputs = [w.communicate(timeout=SCAN_TIME_LIMIT + 30) for w in workers]
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
        parts = []
        for worker, (out, err) in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, f"scan worker failed:\n{err}"
            parts.append(json.loads(out))
        return Scan(
            open={port for part in parts for port in part["open"]},
            refused=sorted(port for part in parts for port in part["refused"]),
            filtered=sum(part["filtered"] for part in parts),
            other={k: v for part in parts for k, v in part["other"].items()},
            seconds=round(time.monotonic() - start, 2),
            in_flight=sum(part["in_flight"] for part in parts),
        )


@contextlib.contextmanager
def topology():
    """server, trusted and outsider, each with one interface on a bridge in "switch".

    Addresses as in ADDRESSES (/24 and /64, no DAD); no firewall yet.
    """
    ip = tool("ip", "iproute2")
    suffix = secrets.token_hex(3)
    roles = ("switch", "server", "trusted", "outsider")
    names = {role: f"fwn-{suffix}-{role}" for role in roles}
    created = []

    def ip_in(role, command):
        run([ip, "-n", names[role], *command.split()])

    try:
        for role in roles:
            run([ip, "netns", "add", names[role]])
            created.append(names[role])
        topo = Topology(suffix, names, ADDRESSES)
        ip_in("switch", "link add br0 type bridge mcast_snooping 0")
        ip_in("switch", "link set br0 up")
        for role in roles:
            ip_in(role, "link set lo up")
        for role in ("server", "trusted", "outsider"):
            _plug_in(topo, ip_in, role)
        yield topo
    finally:
        for name in reversed(created):
            run([ip, "netns", "delete", name], check=False)


def _plug_in(topo, ip_in, role):
    """role's eth0, joined to the switch's bridge, with role's addresses."""
    for key in ("all", "default"):
        topo.run(role, "sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0")
    # Made in the switch, the peer goes straight to its namespace: no
    # interface ever shows up in the host's.
    ip_in("switch", f"link add to-{role} type veth peer name eth0 netns {topo.names[role]}")
    ip_in("switch", f"link set to-{role} master br0 up")
    v4, v6 = ADDRESSES[role]
    ip_in(role, f"addr add {v4}/24 dev eth0")
    ip_in(role, f"addr add {v6}/64 dev eth0 nodad")
    ip_in(role, "link set eth0 up")


@contextlib.contextmanager
def listening(topo, specs, role="server"):
    """Listeners for specs in role's namespace, until the block ends."""
    proc = topo.popen(
        role,
        sys.executable,
        "-c",
        LISTENER,
        json.dumps(specs),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = read_line(proc, 15)
        if line != "ready":
            proc.kill()
            pytest.fail(f"listeners did not start: {line!r}\n{proc.stderr.read()}")
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


@contextlib.contextmanager
def netns():
    """A fresh, empty network namespace; yields a runner for commands in it."""
    ip = tool("ip", "iproute2")
    name = f"fwtest-{secrets.token_hex(6)}"
    run([ip, "netns", "add", name])
    try:

        def in_ns(*cmd, **kwargs):
            return run([ip, "netns", "exec", name, *cmd], **kwargs)

        in_ns.name = name
        yield in_ns
    finally:
        run([ip, "netns", "delete", name], check=False)
