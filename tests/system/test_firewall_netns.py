"""The whitelist of each firewall backend, proven with real port scans.

For each backend (nftables, iptables, ufw) a project is baked and its
deploy/firewall/apply.sh loads the rules inside a throwaway network namespace,
"server". Two more namespaces, "trusted" (one of trusted_clients) and
"outsider", reach it over a bridge that lives in a fourth, "switch". Nothing
touches the host's network namespace; ufw runs in a private mount namespace
over copies of its files, and the host's copies are checked byte for byte
afterwards. All addresses come from the documentation ranges 192.0.2.0/24 and
2001:db8::/32; all names carry a random suffix and are removed in finally.

The server listens on the public ports, on the internal port (bound to its
own addresses, as the internal service would be) and on decoy ports bound to
the wildcard addresses: a port that turns up filtered is filtered by the
firewall, not merely closed. A TCP connect scan of all 65535 ports, IPv4 and
IPv6, must find exactly ssh, 80 and 443 open from the outsider, and those plus
the internal port from the trusted client.

The topology() and listening() context managers and the `firewalled` fixture
are meant for reuse (Topology.run/popen/probe/scan run things in a namespace).
"""

import contextlib
import hashlib
import json
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import pytest

TEMPLATE = Path(__file__).resolve().parent.parent

PROJECT = "fw-netns"
TABLE = "fw_netns_fw"  # __package + "_fw"
SSH_PORT = 2222
INTERNAL_PORT = 8471
PUBLIC_PORTS = {SSH_PORT, 80, 443}
# Listening on 0.0.0.0 and ::. 22 is sshd's usual port, which these rules
# do not open (ssh_port is 2222); 9999 is the one the modified rules open.
DECOY_PORTS = (22, 5432, 8000, 9999)
OPENED_DECOY = 9999
BACKENDS = ("nftables", "iptables", "ufw")


class Host(NamedTuple):
    v4: str
    v6: str


ADDRESSES = {
    "server": Host("192.0.2.1", "2001:db8:1::1"),
    "trusted": Host("192.0.2.20", "2001:db8:1::20"),
    "outsider": Host("192.0.2.30", "2001:db8:1::30"),
}
TRUSTED_CLIENTS = f"{ADDRESSES['trusted'].v4}, {ADDRESSES['trusted'].v6}"

# Per connect attempt; a SYN lost on the way is sent again after 1 s.
SCAN_WINDOW = 1.5
# The ports are split among this many processes, each with its own limit on
# open files (raising the hard limit needs CAP_SYS_RESOURCE, which a container
# may lack), so that most of them are in flight at once.
SCAN_WORKERS = 4
SCAN_TIME_LIMIT = 60  # seconds per scan

needs_root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="not root: this test creates network namespaces and loads firewall rules "
    "into them with the generated apply.sh; run the tests as root (CI does)",
)


# ---------------------------------------------------------------- helpers


def tool(name, package):
    """Path of a command; missing is a failure in CI and a skip elsewhere."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    path = shutil.which(name, path=search)
    if path is None:
        message = f"{name} not found: install it (apt-get install -y {package})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must have it")
        pytest.skip(message)
    return path


def run(cmd, *, check=True, timeout=120, **kwargs):
    proc = subprocess.run(
        [str(part) for part in cmd],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{shlex.join(map(str, cmd))} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def wait_for(predicate, timeout, interval=0.1):
    """Poll until predicate() is true; its last value either way."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


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


def digest(*paths):
    """One hash over the names and contents of every file below the paths."""
    total = hashlib.sha256()
    for root in map(Path, paths):
        files = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in files:
            if path.is_file() and not path.is_symlink():
                total.update(str(path).encode() + b"\0" + path.read_bytes())
    return total.hexdigest()


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
            for key in ("all", "default"):
                topo.run(role, "sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0")
            # Made in the switch, the peer goes straight to its namespace: no
            # interface ever shows up in the host's.
            ip_in(
                "switch",
                f"link add to-{role} type veth peer name eth0 netns {names[role]}",
            )
            ip_in("switch", f"link set to-{role} master br0 up")
            v4, v6 = ADDRESSES[role]
            ip_in(role, f"addr add {v4}/24 dev eth0")
            ip_in(role, f"addr add {v6}/64 dev eth0 nodad")
            ip_in(role, "link set eth0 up")
        yield topo
    finally:
        for name in reversed(created):
            subprocess.run([ip, "netns", "delete", name], check=False, capture_output=True)


def listener_specs(internal=True):
    """(name, address, port): public and decoy ports on the wildcard addresses,
    the internal port on the server's own addresses (as the internal service)."""
    specs = []
    for address in ("0.0.0.0", "::"):
        specs += [
            ("ssh", address, SSH_PORT),
            ("http", address, 80),
            ("https", address, 443),
        ]
        specs += [("decoy", address, port) for port in DECOY_PORTS]
    if internal:
        specs += [("internal", address, INTERNAL_PORT) for address in ADDRESSES["server"]]
    return specs


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


API_PORT = 18000  # the API's loopback port in the server; not a decoy port
PREFIX = PROJECT.replace("-", "_").upper()

# Run in the trusted client's namespace: the project's own client with its
# certificate and the token, then two clients that lack one of the two factors.
MTLS_CLIENT = r"""
import json, socket, ssl, sys

package, host, port, ca, cert, key = sys.argv[1:7]
config = __import__(package + ".config", fromlist=["load"])
client_module = __import__(package + ".internal_client", fromlist=["InternalClient"])
protocol = __import__(package + ".internal.protocol", fromlist=["MessageSocket"])
results = {}
client = client_module.InternalClient.from_settings(config.load())
results["cert_and_token"] = client.call("items.list", limit=5)
client.close()

def exchange(context, first_message):
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                # A refused certificate is answered right after the handshake: wait for
                # that first, as bytes we sent could turn the server's close into a
                # reset that loses the alert.
                tls.settimeout(1)
                try:
                    tls.recv(1)
                except TimeoutError:
                    pass
                messages = protocol.MessageSocket(tls, 1 << 20, timeout=5)
                messages.send(first_message)
                reply = messages.receive()
                return "closed without an answer" if reply is None else reply
        except (ssl.SSLError, ConnectionError) as exc:
            return "tls refused: " + type(exc).__name__ + " " + str(exc)[:80]

def context(with_cert):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if with_cert:
        ctx.load_cert_chain(cert, key)
    return ctx

token = config.load()["INTERNAL_TOKEN"]
results["no_cert"] = exchange(context(False), {"op": "auth", "token": token})
results["cert_no_token"] = exchange(context(True), {"id": 1, "op": "items.list", "args": {}})
print(json.dumps(results))
"""


class RealStack:
    """The generated internal service (one process per address family, both with
    mutual TLS, as in several-hosts mode) and the API under gunicorn, in the server."""

    def __init__(self, topo, project, work):
        self.topo = topo
        self.project = project
        self.package = PROJECT.replace("-", "_")
        self.tls = work / "tls"
        self.processes = []
        self.token = secrets.token_urlsafe(32)
        self.state = work / "state"

    def pki(self, *args):
        run(["bash", self.project / "deploy/pki.sh", "--dir", self.tls, *args])

    def env(self, **settings):
        env = {key: value for key, value in os.environ.items() if not key.startswith(PREFIX)}
        env["PYTHONPATH"] = str(self.project / "src")
        base = {
            "INTERNAL_TOKEN": self.token,
            "INTERNAL_PORT": INTERNAL_PORT,
            "INTERNAL_TLS_CA": self.tls / "ca.crt",
            "LOG_LEVEL": "WARNING",
        }
        env.update({f"{PREFIX}_{key}": str(value) for key, value in {**base, **settings}.items()})
        return env

    def client_env(self, name, host):
        return self.env(
            INTERNAL_ADDRESS=f"[{host}]:{INTERNAL_PORT}"
            if ":" in host
            else f"{host}:{INTERNAL_PORT}",
            INTERNAL_TLS_CERT=self.tls / f"client-{name}.crt",
            INTERNAL_TLS_KEY=self.tls / f"client-{name}.key",
        )

    def start(self):
        server = self.topo.addresses["server"]
        self.pki("ca")
        self.pki("server", server.v4, server.v6)
        self.pki("client", "api")
        self.pki("client", "trusted")
        for address in server:
            env = self.env(
                INTERNAL_BIND=address,
                STATE_DIR=self.state,
                INTERNAL_TLS_CERT=self.tls / "server.crt",
                INTERNAL_TLS_KEY=self.tls / "server.key",
            )
            self._popen([sys.executable, "-m", f"{self.package}.internal"], env)
        env = self.client_env("api", server.v4)
        env[f"{PREFIX}_PUBLIC_PORT"] = str(API_PORT)
        self._popen(
            [sys.executable, "-m", "gunicorn", "-c", f"python:{self.package}.gunicorn_api"], env
        )
        if not wait_for(lambda: self.api("GET", "/api/v1/ready")[0] == 200, 30, 0.2):
            pytest.fail(f"the real stack did not get ready: {self.logs()}")
        return self

    def _popen(self, args, env):
        log = open(self.state.parent / f"stack-{len(self.processes)}.log", "w")  # noqa: SIM115
        process = self.topo.popen(
            "server", *args, env=env, cwd=self.state.parent, stdout=log, stderr=subprocess.STDOUT
        )
        process.log = log
        self.processes.append(process)

    def api(self, method, path, body=None):
        """curl-like request to the API on the server's loopback, from inside the server."""
        code = (
            "import json, sys, urllib.request\n"
            "request = urllib.request.Request(sys.argv[1], data=sys.argv[3].encode() or None,"
            " method=sys.argv[2], headers={'Content-Type': 'application/json'})\n"
            "try:\n"
            "    answer = urllib.request.urlopen(request, timeout=5)\n"
            "    print(answer.status, answer.read().decode())\n"
            "except urllib.error.HTTPError as error:\n"
            "    print(error.code, error.read().decode())\n"
            "except OSError as error:\n"
            "    print(0, error)\n"
        )
        url = f"http://127.0.0.1:{API_PORT}{path}"
        proc = self.topo.run(
            "server",
            sys.executable,
            "-c",
            code,
            url,
            method,
            json.dumps(body) if body is not None else "",
            check=False,
        )
        status, _, text = proc.stdout.strip().partition(" ")
        return int(status or 0), text

    def trusted_client(self, family):
        host = self.topo.address("server", family)
        env = self.client_env("trusted", host)
        proc = self.topo.run(
            "trusted",
            sys.executable,
            "-c",
            MTLS_CLIENT,
            self.package,
            host,
            INTERNAL_PORT,
            self.tls / "ca.crt",
            self.tls / "client-trusted.crt",
            self.tls / "client-trusted.key",
            env=env,
            check=False,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def logs(self):
        texts = []
        for process in self.processes:
            process.log.flush()
            texts.append(Path(process.log.name).read_text()[-3000:])
        return "\n---\n".join(texts)

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
            process.log.close()


# ---------------------------------------------------------------- the baked projects


@pytest.fixture(scope="module")
def baked(cookies_session):
    """baked(backend) -> deploy/firewall of a project for that backend (cached)."""
    cache = {}

    def _bake(backend):
        if backend not in cache:
            result = cookies_session.bake(
                extra_context={
                    "project": PROJECT,
                    "firewall": backend,
                    "ssh_port": SSH_PORT,
                    "internal_port": INTERNAL_PORT,
                    "trusted_clients": TRUSTED_CLIENTS,
                },
                template=str(TEMPLATE),
            )
            assert result.exception is None, f"bake failed: {result.exception!r}"
            assert result.exit_code == 0
            cache[backend] = Path(result.project_path) / "deploy" / "firewall"
        return cache[backend]

    return _bake


def rules_files(folder, backend):
    if backend == "nftables":
        return [folder / "nftables" / f"{PROJECT}.nft"]
    if backend == "iptables":
        return [folder / "iptables" / "rules.v4", folder / "iptables" / "rules.v6"]
    return [folder / "ufw" / "ufw-rules.sh"]


def edited_copies(files, directory, old, new):
    """Copies of files with old replaced by new in each (it must occur)."""
    directory.mkdir(exist_ok=True)
    copies = []
    for path in files:
        text = path.read_text()
        assert old in text, f"{old!r} not in {path.name}"
        copy = directory / path.name
        copy.write_text(text.replace(old, new))
        copy.chmod(path.stat().st_mode)
        copies.append(copy)
    return copies


def normalise_iptables(text):
    """iptables-save output without its dated comments and packet counters."""
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return "\n".join(re.sub(r"\[\d+:\d+\]", "[0:0]", line) for line in lines)


def normalise_nft(text):
    """nft -s list ruleset without the elements of the ssh meters: sources come
    and go there with traffic and time, they are no part of the rules."""
    return re.sub(r"(set ssh_meter_v[46] \{[^}]*?)\n\s*elements = \{[^}]*\}", r"\1", text)


class Firewalled:
    """One backend's rules loaded by apply.sh in a topology's server namespace."""

    def __init__(self, backend, topo, folder, work):
        self.backend = backend
        self.topo = topo
        self.folder = folder  # deploy/firewall of the baked project
        self.apply_script = folder / "apply.sh"
        self.files = rules_files(folder, backend)
        self.work = work
        self.state_dir = work / "state"
        self.ufw_copies = []  # paths of the sandbox's ufw files, seen from the host

    def apply_sh(self, *args, check=True):
        return self.topo.run(
            "server",
            self.apply_script,
            "--state-dir",
            self.state_dir,
            *args,
            check=check,
            timeout=120,
        )

    def snapshot(self):
        """The loaded ruleset as text, as exactly as it can be compared."""
        run_ = self.topo.run
        if self.backend == "nftables":
            return normalise_nft(run_("server", "nft", "-s", "list", "ruleset").stdout)
        v4 = run_("server", "iptables-save").stdout
        v6 = run_("server", "ip6tables-save").stdout
        text = normalise_iptables(v4) + "\n----\n" + normalise_iptables(v6)
        if self.backend == "ufw":
            status = run_("server", "ufw", "status", "verbose").stdout
            text += f"\n----\n{status}\n----\n{digest(*self.ufw_copies)}"
        return text

    def timer_pid(self):
        """Pid of the pending rollback timer, None if there is none."""
        try:
            pid, token = (self.state_dir / "timer.pid").read_text().split()
        except (OSError, ValueError):
            return None
        pid = int(pid)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if b"--timer" in cmdline and token.encode() in cmdline and process_alive(pid):
            return pid
        return None

    def kill_timer(self):
        pid = self.timer_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # setsid: it leads its own group
            wait_for(lambda: not process_alive(pid), 5)


@contextlib.contextmanager
def ufw_sandbox(topo, work):
    """A mount namespace inside the server's network namespace with private copies
    of /etc/ufw, /etc/default/ufw, /lib/ufw and an empty /run; from now on the
    server role runs commands in there. The host's files must not change."""
    nsenter = tool("nsenter", "util-linux")
    tool("ufw", "ufw")
    copies = {
        "etc-ufw": Path("/etc/ufw"),
        "default-ufw": Path("/etc/default/ufw"),
        "lib-ufw": Path("/lib/ufw"),
    }
    host_before = digest(*copies.values())
    for name, source in copies.items():
        if source.is_dir():
            shutil.copytree(source, work / name, symlinks=True)
        else:
            shutil.copy2(source, work / name)
    defaults = (work / "default-ufw").read_text()
    (work / "default-ufw").write_text(
        re.sub(r"^IPV6=.*$", "IPV6=yes", defaults, flags=re.MULTILINE)
    )
    script = (
        "set -e; "
        + "; ".join(
            f"mount --bind {shlex.quote(str(work / name))} {shlex.quote(str(target))}"
            for name, target in copies.items()
        )
        + "; mount -t tmpfs -o mode=0755 fwtest-run /run; echo ready $$; exec sleep 100000"
    )
    unshare = ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
    holder = topo.popen(
        "server",
        *unshare,
        script,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = read_line(holder, 15) or ""
        if not line.startswith("ready "):
            holder.kill()
            pytest.fail(f"ufw sandbox did not start: {line!r}\n{holder.stderr.read()}")
        pid = line.split()[1]
        topo.prefix["server"] = [nsenter, f"--target={pid}", "--mount", "--net", "--"]
        yield [work / name for name in copies]
    finally:
        holder.kill()
        holder.wait(timeout=10)
        assert digest(*copies.values()) == host_before, "the host's ufw files changed"


@pytest.fixture(scope="module", params=BACKENDS)
def firewalled(request, baked, tmp_path_factory):
    """A Firewalled: topology, listeners, and the backend's rules loaded by apply.sh."""
    if os.geteuid() != 0:
        pytest.skip("not root: network namespaces and firewall rules need root (CI runs as root)")
    backend = request.param
    for name, package in (
        ("ip", "iproute2"),
        ("unshare", "util-linux"),
        ("setsid", "util-linux"),
        ("flock", "util-linux"),
    ):
        tool(name, package)
    if backend == "nftables":
        tool("nft", "nftables")
    else:
        for name in (
            "iptables-restore",
            "ip6tables-restore",
            "iptables-save",
            "ip6tables-save",
        ):
            tool(name, "iptables")
    folder = baked(backend)
    work = tmp_path_factory.mktemp(f"netns-{backend}")
    with contextlib.ExitStack() as stack:
        topo = stack.enter_context(topology())
        firewall = Firewalled(backend, topo, folder, work)
        if backend == "ufw":
            firewall.ufw_copies = stack.enter_context(ufw_sandbox(topo, work))
        stack.enter_context(listening(topo, listener_specs(internal=False)))
        real = RealStack(topo, folder.parent.parent, work)
        stack.callback(real.stop)
        firewall.stack = real.start()
        stack.callback(firewall.kill_timer)
        # Before the rules: every listener answers, so a filtered port later on
        # is the firewall's doing.
        targets = [
            (topo.address("server", family), port)
            for port in (*PUBLIC_PORTS, *DECOY_PORTS, INTERNAL_PORT)
            for family in (4, 6)
        ]

        def all_answer():
            results = topo.probe_many("outsider", targets)
            return all(result.startswith("open") for result in results)

        if not wait_for(all_answer, 10, 0.2):
            results = topo.probe_many("outsider", targets)
            pytest.fail(f"a listener does not answer: {list(zip(targets, results, strict=True))}")
        firewall.apply_sh()
        yield firewall


# ---------------------------------------------------------------- apply.sh without root


@pytest.mark.parametrize("backend", BACKENDS)
def test_apply_sh_help_and_bad_arguments(baked, backend):
    """--help, and exactly one error line with exit status 2 for each bad argument."""
    script = baked(backend) / "apply.sh"
    assert os.access(script, os.X_OK), "apply.sh is not executable"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    proc = run([script, "--help"])
    assert proc.stdout.startswith("Usage: apply.sh [--check | --confirm-within SECONDS")
    for word in (
        "--check",
        "--confirm-within",
        "--confirm",
        "--rollback",
        "--state-dir",
        "--dry-run",
        f"/run/{PROJECT}-firewall",
    ):
        assert word in proc.stdout
    bad = {
        ("--bogus",): "unknown option: --bogus",
        ("--confirm-within",): "--confirm-within needs a number of seconds",
        ("--confirm-within", "0"): "--confirm-within wants whole seconds from 1 to",
        ("--confirm-within", "soon"): "--confirm-within wants whole seconds",
        ("--check", "--confirm"): "--check and --confirm cannot be combined",
        ("--confirm", "extra.file"): "--confirm takes no files",
        ("--state-dir", "relative"): "--state-dir needs an absolute path",
        ("--check", "a", "b", "c"): "wrong number of files",
    }
    for args, message in bad.items():
        proc = run([script, *args], check=False)
        assert proc.returncode == 2, (args, proc)
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"apply.sh: error: {message}"), lines
        assert lines[0].endswith("(see --help)")


def run_as_nobody(folder, *args):
    """Run a copy of apply.sh (and its rules) as nobody; as root, from /tmp itself,
    since pytest's own temporary directories are private to root."""
    if os.geteuid() != 0:
        return run([folder / "apply.sh", *args], check=False)
    setpriv = tool("setpriv", "util-linux")
    copy = Path(tempfile.mkdtemp(prefix="fwtest-", dir="/tmp"))
    try:
        copy.chmod(0o755)
        shutil.copytree(folder, copy / "firewall")
        for path in [copy / "firewall", *(copy / "firewall").rglob("*")]:
            path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
        return run(
            [
                setpriv,
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                copy / "firewall" / "apply.sh",
                *args,
            ],
            check=False,
            cwd="/",
        )
    finally:
        shutil.rmtree(copy)


@pytest.mark.parametrize("backend", BACKENDS)
def test_apply_sh_needs_root_except_dry_run(baked, backend):
    """Without root: one clear line and exit 1; --dry-run prints the plan and changes nothing."""
    folder = baked(backend)
    for args in (
        [],
        ["--check"],
        ["--confirm-within", "60"],
        ["--confirm"],
        ["--rollback"],
    ):
        proc = run_as_nobody(folder, *args)
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stdout == ""
        assert proc.stderr.splitlines() == [
            "apply.sh: error: must run as root (--dry-run shows what it would do)"
        ]
    proc = run_as_nobody(folder, "--dry-run", "--confirm-within", "60")
    assert proc.returncode == 0, proc.stderr
    plan = proc.stdout
    assert plan.startswith("Dry run: nothing is changed. apply.sh --confirm-within would:")
    assert "rollback timer (setsid nohup)" in plan and "in 60 s" in plan
    expected = {
        "nftables": ["nft -c -f ", f"nft list table inet {TABLE}", "nft -f "],
        "iptables": [
            "iptables-restore --test ",
            "ip6tables-restore --test ",
            "iptables-save -t filter",
            "ip6tables-restore ",
        ],
        "ufw": ["ufw-rules.sh", "ufw --dry-run", "ufw reload"],
    }[backend]
    for fragment in expected:
        assert fragment in plan, fragment
    assert "flush" not in plan


# ---------------------------------------------------------------- in the namespaces


@needs_root
@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("source", ["outsider", "trusted"])
def test_full_port_scan_finds_exactly_the_whitelist(firewalled, source, family, capsys):
    """All 65535 TCP ports from each client: only the whitelist answers, the rest is silent."""
    topo = firewalled.topo
    expected = set(PUBLIC_PORTS)
    if source == "trusted":
        expected.add(INTERNAL_PORT)
    result = topo.scan(source, topo.address("server", family))
    with capsys.disabled():
        print(
            f"\n[{firewalled.backend}] {source} -> server IPv{family}: "
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


@needs_root
@pytest.mark.parametrize("family", [4, 6])
def test_internal_port_only_for_the_trusted_client_over_mutual_tls(firewalled, family):
    """The outsider's connect to the internal port times out. The trusted client
    completes the mutual-TLS handshake with its certificate, sends the token and
    gets data; without a certificate, or with one and no token, it gets nothing."""
    topo, stack = firewalled.topo, firewalled.stack
    server = topo.address("server", family)
    assert topo.probe("outsider", server, INTERNAL_PORT, 3.0) == "timeout"
    status, _ = stack.api("POST", "/api/v1/items", {"title": f"seen over IPv{family}"})
    assert status == 201

    results = stack.trusted_client(family)
    titles = [item["title"] for item in results["cert_and_token"]["items"]]
    assert f"seen over IPv{family}" in titles
    # TLS 1.3 ends the handshake before the server has judged the certificate,
    # so the refusal arrives as the server's alert on the first read.
    assert "CERTIFICATE_REQUIRED" in str(results["no_cert"]), results["no_cert"]
    refused = results["cert_no_token"]
    assert isinstance(refused, dict) and refused["ok"] is False, refused
    assert refused["error"]["code"] == "unauthorized", refused


@needs_root
def test_loopback_still_works_inside_the_server(firewalled):
    """Local processes still reach each other, on ports closed to the network."""
    topo = firewalled.topo
    targets = [(host, port) for host in ("127.0.0.1", "::1") for port in (OPENED_DECOY, 5432)]
    assert topo.probe_many("server", targets) == [f"open decoy {port}" for _, port in targets]
    outside = [(topo.address("server", family), 5432) for family in (4, 6)]
    assert topo.probe_many("outsider", outside, 1.5) == ["timeout", "timeout"]
    # The API on 127.0.0.1 reaches the internal service through the firewall,
    # over mutual TLS, and answers ready.
    assert firewalled.stack.api("GET", "/api/v1/ready")[0] == 200


def broken_rules(firewall):
    """Copies of the rules with one mistake each backend's tool must catch, and
    a fragment of the tool's own message about it."""
    directory = firewall.work / "broken"
    if firewall.backend == "nftables":
        copies = edited_copies(firewall.files, directory, "policy drop;", "policy drip;")
        return copies, "Error: syntax error"
    if firewall.backend == "iptables":
        v4 = firewall.files[0]
        (v6,) = edited_copies(
            firewall.files[1:], directory, "--dports 80,443 ", "--dports 80,443,99999 "
        )
        return [v4, v6], "99999"
    return edited_copies(
        firewall.files, directory, "run ufw allow 443/tcp", "run ufw allow 99999/tcp"
    ), "ERROR: Bad port"


@needs_root
def test_check_rejects_broken_rules_and_changes_nothing(firewalled):
    """--check: the good rules pass, a broken copy fails with the tool's message;
    the loaded ruleset is the same before and after both."""
    before = firewalled.snapshot()
    proc = firewalled.apply_sh("--check")
    assert proc.stdout.startswith("apply.sh: check passed: ")
    broken, message = broken_rules(firewalled)
    proc = firewalled.apply_sh("--check", *broken, check=False)
    assert proc.returncode == 1, proc
    assert message in proc.stderr, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("apply.sh: error: check failed: ")
    assert proc.stderr.splitlines()[-1].endswith("(nothing was changed)")
    # Loading it for real is refused just the same, before anything changes.
    proc = firewalled.apply_sh(*broken, check=False)
    assert proc.returncode == 1 and message in proc.stderr, proc
    if firewalled.backend == "nftables":
        flushing = firewalled.work / "flushing.nft"
        flushing.write_text("flush ruleset\n" + firewalled.files[0].read_text())
        proc = firewalled.apply_sh("--check", flushing, check=False)
        assert proc.returncode == 1
        assert "'flush ruleset' would delete every other table too" in proc.stderr
    assert firewalled.snapshot() == before
    assert not (firewalled.state_dir / "pending").exists()


def opening_decoy(firewall):
    """Copies of the rules that also open OPENED_DECOY."""
    directory = firewall.work / "opening"
    if firewall.backend == "nftables":
        return edited_copies(
            firewall.files,
            directory,
            "tcp dport { 80, 443 } accept",
            f"tcp dport {{ 80, 443, {OPENED_DECOY} }} accept",
        )
    if firewall.backend == "iptables":
        return edited_copies(
            firewall.files,
            directory,
            "--dports 80,443 ",
            f"--dports 80,443,{OPENED_DECOY} ",
        )
    line = "run ufw allow 443/tcp comment 'https, served by nginx'\n"
    return edited_copies(
        firewall.files,
        directory,
        line,
        f"{line}run ufw allow {OPENED_DECOY}/tcp comment 'test decoy'\n",
    )


def decoy_from_outsider(topo):
    """{4: result, 6: result} of connecting to OPENED_DECOY from the outsider."""
    targets = [(topo.address("server", family), OPENED_DECOY) for family in (4, 6)]
    return dict(zip((4, 6), topo.probe_many("outsider", targets, 1.5), strict=True))


OPENED = {4: f"open decoy {OPENED_DECOY}", 6: f"open decoy {OPENED_DECOY}"}
CLOSED = {4: "timeout", 6: "timeout"}


@needs_root
def test_unconfirmed_change_rolls_back(firewalled):
    """--confirm-within 2 and no --confirm: the new rules are live, then the
    timer restores the previous ruleset exactly, and the timer is gone."""
    topo = firewalled.topo
    before = firewalled.snapshot()
    assert decoy_from_outsider(topo) == CLOSED
    try:
        proc = firewalled.apply_sh("--confirm-within", "2", *opening_decoy(firewalled))
        loaded = time.monotonic()
        lines = proc.stdout.splitlines()
        assert "unless confirmed" in lines[-2]
        assert lines[-1].startswith("Open a NEW ssh session to this host and run there: sudo ")
        assert lines[-1].endswith(f"apply.sh --confirm --state-dir {firewalled.state_dir}")
        pid = firewalled.timer_pid()
        assert pid is not None, "no rollback timer runs"
        # Its own session: an ssh logout (SIGHUP to the session) cannot reach it.
        assert os.getsid(pid) == pid
        assert decoy_from_outsider(topo) == OPENED
        assert firewalled.snapshot() != before
        restored = wait_for(lambda: firewalled.snapshot() == before, 20, 0.25)
        assert restored, "the previous ruleset did not come back"
        assert time.monotonic() - loaded >= 1.5, "rolled back too early"
        assert decoy_from_outsider(topo) == CLOSED
        assert wait_for(lambda: not process_alive(pid), 5), "the timer still runs"
        proc = firewalled.apply_sh("--confirm", check=False)
        assert proc.returncode == 1
        assert "too late: the saved state was restored at" in proc.stderr
        if firewalled.backend == "nftables":
            rollback_to_no_table(firewalled)
    finally:
        firewalled.kill_timer()
    assert firewalled.snapshot() == before


def rollback_to_no_table(firewall):
    """nftables: with no table before, the rollback deletes the table again."""
    topo = firewall.topo
    topo.run("server", "nft", "delete", "table", "inet", TABLE)
    empty = firewall.snapshot()
    assert TABLE not in empty
    firewall.apply_sh("--confirm-within", "2")
    assert TABLE in firewall.snapshot()
    assert wait_for(lambda: firewall.snapshot() == empty, 20, 0.25), "table not deleted"
    # Back to the real rules for the next tests.
    firewall.apply_sh()


@needs_root
def test_confirmed_change_stays(firewalled):
    """--confirm in time: the timer is cancelled and the new rules outlive the deadline."""
    topo = firewalled.topo
    before = firewalled.snapshot()
    try:
        firewalled.apply_sh("--confirm-within", "3", *opening_decoy(firewalled))
        loaded = time.monotonic()
        pid = firewalled.timer_pid()
        assert pid is not None
        changed = firewalled.snapshot()
        proc = firewalled.apply_sh("--confirm")
        assert proc.stdout == "apply.sh: confirmed: the new rules stay, the rollback is cancelled\n"
        assert wait_for(lambda: not process_alive(pid), 5), "the timer still runs"
        time.sleep(max(0.0, loaded + 4 - time.monotonic()))  # past the deadline
        assert decoy_from_outsider(topo) == OPENED
        assert firewalled.snapshot() == changed
        proc = firewalled.apply_sh("--confirm")
        assert proc.stdout.startswith("apply.sh: nothing to confirm")
    finally:
        firewalled.kill_timer()
        # Back to the real rules: ufw-rules.sh only adds, so delete the extra rule.
        if firewalled.backend == "ufw":
            topo.run("server", "ufw", "delete", "allow", f"{OPENED_DECOY}/tcp")
        else:
            firewalled.apply_sh()
    assert decoy_from_outsider(topo) == CLOSED
    assert firewalled.snapshot() == before


@needs_root
def test_rollback_on_demand(firewalled):
    """--rollback while a change is pending: the previous ruleset is back at once,
    the timer is gone, and a second --rollback finds nothing to do."""
    topo = firewalled.topo
    before = firewalled.snapshot()
    try:
        firewalled.apply_sh("--confirm-within", "600", *opening_decoy(firewalled))
        pid = firewalled.timer_pid()
        assert pid is not None
        assert decoy_from_outsider(topo) == OPENED
        proc = firewalled.apply_sh("--rollback")
        assert proc.stdout.endswith("apply.sh: rolled back: the saved state is loaded again\n")
        assert firewalled.snapshot() == before
        assert wait_for(lambda: not process_alive(pid), 5), "the timer still runs"
        assert decoy_from_outsider(topo) == CLOSED
        proc = firewalled.apply_sh("--rollback", check=False)
        assert proc.returncode == 1
        assert "nothing to roll back" in proc.stderr
    finally:
        firewalled.kill_timer()
