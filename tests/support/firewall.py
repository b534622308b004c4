"""The whitelist of each firewall backend, set up for tests/system/test_firewall_netns.py.

For each backend (nftables, iptables, ufw) a project is baked and its
deploy/firewall/apply.sh loads the rules inside the "server" namespace of a
support.netns topology; "trusted" (one of trusted_clients) and "outsider"
are its clients. ufw runs in a private mount namespace over copies of its
files (support/ufw.py), and the host's copies are checked byte for byte
afterwards.

The server listens on the public ports, on the internal port (bound to its
own addresses, as the internal service would be) and on decoy ports bound to
the wildcard addresses: a port that turns up filtered is filtered by the
firewall, not merely closed. Inside it runs the generated internal service
with mutual TLS and the API (RealStack); the admin command, with the admin
secret, mints the API token that the API's callers and the trusted client send.
"""

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support.baking import TEMPLATE_DIR
from support.files import digest
from support.netns import ADDRESSES
from support.processes import process_alive, run, stop_processes, wait_for

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
TRUSTED_CLIENTS = f"{ADDRESSES['trusted'].v4}, {ADDRESSES['trusted'].v6}"
API_PORT = 18000  # the API's loopback port in the server; not a decoy port
METRICS_PORT = 18001  # its Prometheus metrics, on loopback too: never seen from outside
PREFIX = PROJECT.replace("-", "_").upper()


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


# Run in the trusted client's namespace: the project's own client with its
# certificate and the token, on behalf of a caller with an API token; then the
# same connection without an API token, and asking for an admin operation; then
# two clients that lack one of the two factors of the connection.
MTLS_CLIENT = r"""
import json, socket, ssl, sys

package, host, port, ca, cert, key, api_token = sys.argv[1:8]
config = __import__(package + ".config", fromlist=["load"])
contract = __import__(package + ".contract", fromlist=["tokens"])
client_module = __import__(package + ".internal_client", fromlist=["InternalClient"])
protocol = __import__(package + ".protocol", fromlist=["MessageSocket"])
results = {}
client = client_module.InternalClient.from_settings(config.load())
client.caller = {"token": api_token}
results["cert_and_token"] = client.items.list(limit=5)

def refusal(call):
    try:
        call()
    except client_module.InternalError as exc:
        return exc.code
    return "served"

client.caller = None
results["no_api_token"] = refusal(lambda: client.items.list(limit=5))
results["admin_on_api_connection"] = refusal(lambda: client.call(contract.tokens.list))
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
        self.admin_token = secrets.token_urlsafe(32)
        # The API token the API's callers and the trusted client send; minted in start().
        self.api_token = None
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
                ADMIN_TOKEN=self.admin_token,
            )
            self._popen([sys.executable, "-m", f"{self.package}.internal"], env)
        env = self.client_env("api", server.v4)
        env[f"{PREFIX}_PUBLIC_PORT"] = str(API_PORT)
        env[f"{PREFIX}_METRICS_PORT"] = str(METRICS_PORT)
        env[f"{PREFIX}_METRICS_DIR"] = str(self.state.parent / "metrics")
        self._popen(
            [sys.executable, "-m", "gunicorn", "-c", f"python:{self.package}.gunicorn_api"], env
        )
        if not wait_for(lambda: self.api("GET", "/api/v1/ready")[0] == 200, 30, 0.2):
            pytest.fail(f"the real stack did not get ready: {self.logs()}")
        self.api_token = self.mint("items:read", "items:write")
        return self

    def mint(self, *scopes):
        """An API token from the admin command, run in the server over mutual TLS
        (the API's client certificate) with the admin secret: its stdout's last line."""
        env = self.client_env("api", self.topo.address("server", 4))
        env[f"{PREFIX}_ADMIN_TOKEN"] = self.admin_token
        args = [arg for scope in scopes for arg in ("--scope", scope)]
        made = self.topo.run(
            "server", sys.executable, "-m", f"{self.package}.admin",
            "tokens", "create", "--name", "netns", *args,
            env=env, cwd=self.state.parent, timeout=60,
        )  # fmt: skip
        return made.stdout.splitlines()[-1]

    def _popen(self, args, env):
        log = open(self.state.parent / f"stack-{len(self.processes)}.log", "w")  # noqa: SIM115
        process = self.topo.popen(
            "server", *args, env=env, cwd=self.state.parent, stdout=log, stderr=subprocess.STDOUT
        )
        process.log = log
        self.processes.append(process)

    def api(self, method, path, body=None):
        """curl-like request to the API on the server's loopback, from inside the server,
        with the API token once there is one."""
        code = (
            "import json, sys, urllib.request\n"
            "headers = {'Content-Type': 'application/json'}\n"
            "if sys.argv[4]:\n"
            "    headers['Authorization'] = 'Bearer ' + sys.argv[4]\n"
            "request = urllib.request.Request(sys.argv[1], data=sys.argv[3].encode() or None,"
            " method=sys.argv[2], headers=headers)\n"
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
            self.api_token or "",
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
            self.api_token,
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
        stop_processes(self.processes)
        for process in self.processes:
            process.log.close()


def firewall_baker(cookies):
    """bake(backend) -> deploy/firewall of a project for that backend (cached)."""
    cache = {}

    def bake(backend):
        if backend not in cache:
            result = cookies.bake(
                extra_context={
                    "project": PROJECT,
                    "firewall": backend,
                    "ssh_port": SSH_PORT,
                    "internal_port": INTERNAL_PORT,
                    "trusted_clients": TRUSTED_CLIENTS,
                },
                template=str(TEMPLATE_DIR),
            )
            assert result.exception is None, f"bake failed: {result.exception!r}"
            assert result.exit_code == 0
            cache[backend] = Path(result.project_path) / "deploy" / "firewall"
        return cache[backend]

    return bake


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
