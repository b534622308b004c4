"""Benchmark harness: the generated stack against a bare Flask baseline, in one run.

    python bench/run.py [--seconds 10] [--rounds 3] [--connections 8,32,64] [--out bench.json]

It bakes a project with the default answers, starts its two servers on
loopback as `honcho start` would (production-like: debug off), and starts a
bare Flask app returning a small JSON dict under gunicorn with the project's
own worker count and class. The stack runs with anonymous reads on, so that
items/<id> is measured both without a token and with one (minted by the
project's admin command) in the same round; writes always send it. A second,
identical stack has metrics on (METRICS_PORT), for what they cost. wrk then
loads each target at each concurrency, round after round, with the order of
the targets reversed every other round.
Each figure is set against the baseline of the same round.

It prints a markdown table and writes JSON. Only loopback is used, every wrk
run is bounded by --seconds, and every process started here is stopped.
Needs wrk (apt-get install wrk) and the template's dev requirements.
"""

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parent.parent
PACKAGE = "myservice"
PREFIX = PACKAGE.upper()

BASELINE_APP = """\
from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return {"status": "ok"}
"""

BASELINE_CONFIG = """\
# The project's own worker count and class (and threads and keep-alive, if it sets them).
from {package} import gunicorn_api as _project

workers = _project.workers
worker_class = _project.worker_class
threads = getattr(_project, "threads", 1)
keepalive = getattr(_project, "keepalive", 2)
bind = ["127.0.0.1:{port}"]
wsgi_app = "baseline_app:app"
worker_tmp_dir = "/dev/shm"
control_socket_disable = True
loglevel = "warning"
"""

TOKEN_SCRIPT = """\
wrk.headers["Authorization"] = "Bearer {token}"
"""

POST_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.body = '{{"title": "benchmark item", "body": "written by wrk"}}'
"""

# name -> (server group, path, wrk script or None)
TARGETS = {
    "baseline": ("baseline", "/", None),
    "health, harden off": ("plain", "/api/v1/health", None),
    "health, harden on": ("stack", "/api/v1/health", None),
    "items/<id>, harden on": ("stack", "/api/v1/items/1", None),
    "items/<id>, with a token": ("stack", "/api/v1/items/1", "token.lua"),
    "items/<id>, metrics on": ("metered", "/api/v1/items/1", None),
    "POST items, harden on": ("stack", "/api/v1/items", "post.lua"),
}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url, deadline_s=30.0):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # loopback only
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

    def start(self, group, args, env, name):
        log = open(self.work / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
        process = subprocess.Popen(
            args, env=env, cwd=self.work, stdout=log, stderr=subprocess.STDOUT
        )
        process.log = log
        process.name = name
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

    def cpu_seconds(self, group, name=None):
        """User plus system CPU of a group's processes (only the one called name, if given)."""
        total = 0.0
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
        for processes in self.groups.values():
            for process in processes:
                if process.poll() is None:
                    process.terminate()
        for processes in self.groups.values():
            for process in processes:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=15)
                process.log.close()


def bake(work, template):
    cookiecutter(str(template), no_input=True, output_dir=str(work))
    return work / "myservice"


def start_stack(processes, group, env, ports):
    """An internal service and its API (harden on) under env, as the group; its URL."""
    python = sys.executable
    processes.start(group, [python, "-m", f"{PACKAGE}.internal"], env, f"internal-{group}")
    time.sleep(0.5)
    api_env = {**env, f"{PREFIX}_PUBLIC_PORT": str(ports[group]), f"{PREFIX}_HARDEN": "true"}
    args = [python, "-m", "gunicorn", "-c", f"python:{PACKAGE}.gunicorn_api"]
    processes.start(group, args, api_env, f"api-{group}")
    return f"http://127.0.0.1:{ports[group]}"


def start_servers(processes, project, work, overrides):
    """The stack (harden on), a second API on it with harden off, a second stack
    with metrics on (its own state and metrics directory), and the baseline."""
    names = ("internal", "stack", "plain", "internal-metered", "metered", "metrics", "baseline")
    ports = {name: free_port() for name in names}
    base = {key: value for key, value in os.environ.items() if not key.startswith(PREFIX + "_")}
    base["PYTHONPATH"] = os.pathsep.join([str(work), str(project / "src")])
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
    urls = {group: start_stack(processes, group, envs[group], ports) for group in envs}
    python = sys.executable
    plain_env = {**envs["stack"], f"{PREFIX}_PUBLIC_PORT": str(ports["plain"])}
    plain_env[f"{PREFIX}_HARDEN"] = "false"
    args = [python, "-m", "gunicorn", "-c", f"python:{PACKAGE}.gunicorn_api"]
    processes.start("plain", args, plain_env, "api-plain")
    (work / "baseline_app.py").write_text(BASELINE_APP)
    (work / "baseline_conf.py").write_text(
        BASELINE_CONFIG.format(package=PACKAGE, port=ports["baseline"])
    )
    # HARDEN off, so that importing the project's settings leaves gunicorn as it is.
    baseline_env = {**envs["stack"], f"{PREFIX}_HARDEN": "false"}
    processes.start(
        "baseline",
        [python, "-m", "gunicorn", "-c", "python:baseline_conf"],
        baseline_env,
        "baseline",
    )
    urls.update({group: f"http://127.0.0.1:{ports[group]}" for group in ("plain", "baseline")})
    for group in ("stack", "metered", "plain", "baseline"):
        wait_for(urls[group] + ("/" if group == "baseline" else "/api/v1/ready"))
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
    request = urllib.request.Request(
        url + "/api/v1/items",
        data=b'{"title": "read by the benchmark"}',
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # loopback only
        return answer.headers["Location"]


LATENCY_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(output):
    """rps, p50 and p99 in ms, and errors (socket errors plus non-2xx/3xx) from wrk --latency."""

    def latency(percent):
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        return float(match.group(1)) * LATENCY_UNITS[match.group(2)] if match else None

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    errors = 0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(value) for value in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    return {
        "rps": rps,
        "p50_ms": latency(50),
        "p99_ms": latency(99),
        "errors": errors,
        "requests": requests,
    }


def cpu_jiffies():
    """(idle, total) jiffies of the whole machine from /proc/stat: idle counts iowait too."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields)


def run_wrk(url, connections, seconds, script):
    threads = min(2, connections)
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        args += ["-s", str(script)]
    output = subprocess.run(
        [*args, url], capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    return parse_wrk(output)


def summarise(samples):
    """Median/min/max of rps, medians of the rest, and ratios to the same round's baseline."""
    table = {}
    for (target, connections), runs in samples.items():
        ratios = [run["ratio"] for run in runs if run.get("ratio") is not None]
        table.setdefault(target, {})[connections] = {
            "rps_median": statistics.median(run["rps"] for run in runs),
            "rps_min": min(run["rps"] for run in runs),
            "rps_max": max(run["rps"] for run in runs),
            "p50_ms": statistics.median(run["p50_ms"] for run in runs),
            "p99_ms": statistics.median(run["p99_ms"] for run in runs),
            "errors": sum(run["errors"] for run in runs),
            "cpu_us_per_request": statistics.median(run["cpu_us"] for run in runs),
            "internal_cpu_us_per_request": statistics.median(
                run["internal_cpu_us"] for run in runs
            ),
            "idle_percent": statistics.median(run["idle_percent"] for run in runs),
            "ratio_median": statistics.median(ratios) if ratios else None,
            "ratio_min": min(ratios) if ratios else None,
        }
    return table


# The targets: (what, how it is computed, comparison, limit).
HOP = "items/<id>, harden on"


def round_ratio(samples, target, other, connections):
    """Median over rounds of target's rps over other's, both from the same round."""
    pairs = zip(samples[(target, connections)], samples[(other, connections)], strict=True)
    return statistics.median(a["rps"] / b["rps"] for a, b in pairs)


def hop_alone(samples, connections_list):
    """What the hop alone costs: items/<id> against health on the same stack, harden
    on both, so that the API's own layers cancel out."""
    return {c: round_ratio(samples, HOP, "health, harden on", c) for c in connections_list}


def target_rows(samples, table, pss_mb, connections_list):
    """Each target against its figure: per concurrency, the median over rounds
    of the ratio within one round (harden on/off) or of the p99s (table)."""
    rows = []
    for connections in connections_list:
        hop = table[HOP][connections]["ratio_median"]
        rows.append((f"items/<id> ≥ 0.70× baseline, c{connections}", hop, ">=", 0.70))
    for connections in connections_list:
        ratio = round_ratio(samples, "health, harden on", "health, harden off", connections)
        rows.append((f"health harden on ≥ 0.95× harden off, c{connections}", ratio, ">=", 0.95))
    for connections in connections_list:
        ratio = round_ratio(samples, "items/<id>, with a token", HOP, connections)
        rows.append((f"items/<id> with a token ≥ 0.95× without, c{connections}", ratio, ">=", 0.95))
    for connections in connections_list:
        ratio = round_ratio(samples, "items/<id>, metrics on", HOP, connections)
        rows.append((f"items/<id> metrics on ≥ 0.97× off, c{connections}", ratio, ">=", 0.97))
    if 32 in connections_list:
        p99 = table[HOP][32]["p99_ms"] / table["baseline"][32]["p99_ms"]
        rows.append(("items/<id> p99 ≤ 1.5× baseline p99, c32", p99, "<=", 1.5))
    rows.append(("whole-stack PSS after load ≤ 90 MB", pss_mb["stack"], "<=", 90.0))
    return rows


def targets_markdown(rows):
    lines = ["| target | measured | met |", "|---|---|---|"]
    for name, value, comparison, limit in rows:
        met = value >= limit if comparison == ">=" else value <= limit
        figure = f"{value:.1f} MB" if "MB" in name else f"{value:.3f}×"
        lines.append(f"| {name} | {figure} | {'yes' if met else 'no'} |")
    return "\n".join(lines)


def hop_markdown(hop):
    header = " | ".join(f"c{connections}" for connections in hop)
    figures = " | ".join(f"{ratio:.2f}×" for ratio in hop.values())
    return "\n".join(
        [
            f"| hop alone: items/<id> ÷ health, harden on, same round | {header} |",
            "|---|" + "---|" * len(hop),
            f"| ratio | {figures} |",
        ]
    )


def markdown(table, pss_mb, connections_list):
    lines = [
        (
            "| target | c | rps median (min-max) | ratio to baseline (min) | p50 ms | p99 ms "
            "| errors | server CPU µs/req | of it internal | machine idle |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for target in TARGETS:
        for connections in connections_list:
            row = table[target][connections]
            ratio = (
                f"{row['ratio_median']:.2f}× ({row['ratio_min']:.2f})"
                if row["ratio_median"] is not None
                else "1.00×"
            )
            lines.append(
                f"| {target} | {connections} | {row['rps_median']:,.0f} "
                f"({row['rps_min']:,.0f}-{row['rps_max']:,.0f}) | {ratio} | {row['p50_ms']:.2f} "
                f"| {row['p99_ms']:.2f} | {row['errors']} | {row['cpu_us_per_request']:.0f} "
                f"| {row['internal_cpu_us_per_request']:.0f} | {row['idle_percent']:.1f} % |"
            )
    lines.append("")
    lines.append(
        f"Whole-stack PSS after load (internal service + API with harden on): "
        f"{pss_mb['stack']:.1f} MB; baseline: {pss_mb['baseline']:.1f} MB"
    )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--connections", default="8,32,64", help="concurrencies (default 8,32,64)")
    parser.add_argument("--out", default="bench-results.json", help="JSON output file")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"a {PREFIX}_NAME setting for every server, e.g. --set WORKERS=3 (repeatable)",
    )
    parser.add_argument(
        "--template", default=str(TEMPLATE), help="template to bake (default: this one)"
    )
    args = parser.parse_args()
    connections_list = [int(value) for value in args.connections.split(",")]
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is missing: apt-get install wrk")

    work = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
    processes = Processes(work)
    try:
        overrides = {}
        for item in args.set:
            name, sep, value = item.partition("=")
            if not sep:
                raise SystemExit(f"bench: --set {item!r}: use NAME=VALUE")
            overrides[f"{PREFIX}_{name}"] = value
        project = bake(work, args.template)
        urls, envs = start_servers(processes, project, work, overrides)
        token = mint(envs["stack"])
        item = seed(urls["stack"], token)
        if seed(urls["metered"], mint(envs["metered"])) != item:
            raise SystemExit("bench: the two stacks' items differ")
        (work / "post.lua").write_text(POST_SCRIPT.format(token=token))
        (work / "token.lua").write_text(TOKEN_SCRIPT.format(token=token))
        paths = {target: path for target, (_, path, _) in TARGETS.items()}
        paths["items/<id>, harden on"] = paths["items/<id>, with a token"] = item
        samples = {}
        order = list(TARGETS)
        for round_number in range(args.rounds):
            targets = order if round_number % 2 == 0 else list(reversed(order))
            for connections in connections_list:
                results = {}
                for target in targets:
                    group, _, script = TARGETS[target]
                    cpu_before = processes.cpu_seconds(group)
                    internal_before = processes.cpu_seconds(group, f"internal-{group}")
                    jiffies_before = cpu_jiffies()
                    result = run_wrk(
                        urls[group] + paths[target],
                        connections,
                        args.seconds,
                        work / script if script else None,
                    )
                    cpu = processes.cpu_seconds(group) - cpu_before
                    internal = processes.cpu_seconds(group, f"internal-{group}") - internal_before
                    idle, total = (
                        b - a for a, b in zip(jiffies_before, cpu_jiffies(), strict=True)
                    )
                    requests = max(result["requests"], 1)
                    result["cpu_us"] = cpu / requests * 1e6
                    result["internal_cpu_us"] = internal / requests * 1e6
                    result["idle_percent"] = 100 * idle / max(total, 1)
                    results[target] = result
                    print(
                        f"round {round_number + 1} c{connections} {target}: "
                        f"{result['rps']:,.0f} rps, p99 {result['p99_ms']:.2f} ms, "
                        f"{result['errors']} errors",
                        file=sys.stderr,
                    )
                baseline = results["baseline"]["rps"]
                for target, result in results.items():
                    if target != "baseline":
                        result["ratio"] = result["rps"] / baseline
                    samples.setdefault((target, connections), []).append(result)
        pss = {group: processes.pss_mb(group) for group in ("stack", "baseline")}
        table = summarise(samples)
        targets = target_rows(samples, table, pss, connections_list)
        print(markdown(table, pss, connections_list))
        print()
        print(targets_markdown(targets))
        hop = hop_alone(samples, connections_list)
        print()
        print(hop_markdown(hop))
        Path(args.out).write_text(
            json.dumps(
                {
                    "seconds": args.seconds,
                    "rounds": args.rounds,
                    "pss_mb": pss,
                    "hop_alone": {str(c): ratio for c, ratio in hop.items()},
                    "targets": [
                        dict(zip(("target", "measured", "comparison", "limit"), row, strict=True))
                        for row in targets
                    ],
                    "results": {
                        target: {str(c): row for c, row in rows.items()}
                        for target, rows in table.items()
                    },
                },
                indent=2,
            )
        )
        print(f"\nJSON: {args.out}", file=sys.stderr)
    finally:
        processes.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
