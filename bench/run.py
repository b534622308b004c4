"""Benchmark harness: the generated stack against bare Flask and a Flask-SQLAlchemy app, in one run.

    python bench/run.py [--front direct|nginx|both] [--database both|sqlite]
                        [--seconds 10] [--rounds 6] [--connections 32]
                        [--out bench-results.json]

It bakes a project with the default answers and starts on loopback (see
servers.py): the stack (internal service + API, harden on, as `honcho start`
would: debug off), a second API with harden off, a second stack with metrics
on, bare Flask under stock gunicorn (sync workers: the baseline), the same
bare Flask under the project's worker class, threads and keep-alive, and a
Flask + Flask-SQLAlchemy + flask-talisman app (sqlalchemy_app.py) under those
same settings. Anonymous reads are on, so that items/<id> is measured both
without a token and with one (minted by the project's admin command); writes
always send it. Unless --database sqlite, it also bakes a project with
database=postgresql and starts its stack on a private PostgreSQL cluster
(initdb in /tmp, unix socket only), whose items/<id> and POST items are loaded
beside the SQLite stack's, in direct keep-alive mode and through nginx.

Modes (plan.py): direct with keep-alive clients, direct with clients that
send `Connection: close`, and (--front nginx) over HTTPS through a copy of the
generated nginx site per server group (front.py). wrk loads each mode's
targets at each concurrency, round after round, the order reversed every
other round; every figure is set against the baseline of the same mode and
round, and the medians over rounds are printed as markdown tables, with a
table of the targets met, and written as JSON.

Only loopback is used, every wrk run is bounded by --seconds, and every
process started here is stopped at the end, whatever happens. Needs wrk,
nginx with libnginx-mod-http-headers-more-filter, openssl, and the template's
dev requirements.
"""

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import servers
import sqlalchemy_app
from front import Front
from plan import BASELINE, FRONTS, HEALTH, ITEMS, KEEPALIVE, NGINX, POSTGRESQL, TARGETS, VARIANTS
from report import hop_markdown, markdown, parse_wrk, round_ratio, summarise, target_rows
from report import targets_markdown as goals_markdown

TEMPLATE = Path(__file__).resolve().parent.parent

SCRIPTS = {
    "token": 'wrk.headers["Authorization"] = "Bearer {token}"\n',
    "post": (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.headers["Authorization"] = "Bearer {token}"\n'
        'wrk.body = \'{{"title": "benchmark item", "body": "written by wrk"}}\'\n'
    ),
}
# A client that closes after each answer: a new TCP connection per request.
CLOSE_SCRIPT = 'wrk.headers["Connection"] = "close"\n'


def write_scripts(work, token, group):
    """(script kind, close) -> the wrk script that does it (with group's token), or None
    for a plain GET."""
    scripts = {(None, False): None}
    for kind in (None, *SCRIPTS):
        for close in (False, True):
            text = (SCRIPTS[kind].format(token=token) if kind else "") + (
                CLOSE_SCRIPT if close else ""
            )
            if text:
                path = work / f"{group}-{kind or 'get'}{'-close' if close else ''}.lua"
                path.write_text(text)
                scripts[(kind, close)] = path
    return scripts


def run_wrk(url, connections, seconds, script):
    threads = min(2, connections)
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        args += ["-s", str(script)]
    output = subprocess.run(
        [*args, url], capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    return parse_wrk(output)


def cpu_jiffies():
    """(idle, total) jiffies of the whole machine from /proc/stat: idle counts iowait too."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields)


def measure(processes, groups, url, connections, seconds, script):
    """One wrk run, with the CPU the groups used per request and how idle the machine was."""
    internal = f"internal-{groups[0]}"
    cpu_before = processes.cpu_seconds(groups)
    internal_before = processes.cpu_seconds(groups[:1], internal)
    jiffies_before = cpu_jiffies()
    result = run_wrk(url, connections, seconds, script)
    cpu = processes.cpu_seconds(groups) - cpu_before
    internal_cpu = processes.cpu_seconds(groups[:1], internal) - internal_before
    idle, total = (b - a for a, b in zip(jiffies_before, cpu_jiffies(), strict=True))
    requests = max(result["requests"], 1)
    result["cpu_us"] = cpu / requests * 1e6
    result["internal_cpu_us"] = internal_cpu / requests * 1e6
    result["idle_percent"] = 100 * idle / max(total, 1)
    return result


def one_round(setup, round_number, samples):
    """Every mode, concurrency and target once; the order reversed every other round."""
    forward = round_number % 2 == 0
    variants = setup["variants"] if forward else setup["variants"][::-1]
    for variant in variants:
        front, close, _ = VARIANTS[variant]
        targets = setup["targets"][variant]
        for connections in setup["connections"]:
            results = {}
            for target in targets if forward else targets[::-1]:
                group, path, kind = TARGETS[target]
                groups = [group, "nginx"] if front == "nginx" else [group]
                url = setup["urls"][front][group] + path.format(item=setup["item"])
                # Only the PostgreSQL stack knows its own token; the rest take the SQLite stack's.
                script = setup["scripts"].get(group, setup["scripts"]["stack"])[(kind, close)]
                result = measure(
                    setup["processes"], groups, url, connections, setup["seconds"], script
                )
                results[target] = result
                print(
                    f"round {round_number + 1} {variant} c{connections} {target}: "
                    f"{result['rps']:,.0f} rps, p99 {result['p99_ms']:.2f} ms, "
                    f"{result['errors']} errors",
                    file=sys.stderr,
                )
            baseline = results[targets[0]]["rps"]
            for target, result in results.items():
                result["ratio"] = result["rps"] / baseline if target != targets[0] else None
                samples.setdefault((variant, target, connections), []).append(result)


def read_item(url, path):
    with urllib.request.urlopen(url + path, timeout=10) as answer:  # loopback only
        return json.load(answer)


def mode_targets(variant, database):
    """The mode's targets, less the PostgreSQL stack's with --database sqlite."""
    return [t for t in VARIANTS[variant][2] if database == "both" or t not in POSTGRESQL]


def prepare(processes, work, args, overrides):
    """Servers started, the item written to every database, nginx if asked: the setup."""
    project = servers.bake(work, args.template)
    database = work / "sqlalchemy.sqlite3"
    direct, envs = servers.start_servers(processes, project, work, overrides, database)
    tokens = {"stack": servers.mint(envs["stack"])}
    item = servers.seed(direct["stack"], tokens["stack"])
    if servers.seed(direct["metered"], servers.mint(envs["metered"])) != item:
        raise SystemExit("bench: the two stacks' items differ")
    if args.database == "both":
        tokens["stack-pg"] = add_postgresql(processes, work, args, overrides, direct, item)
    row = read_item(direct["stack"], item)
    if sqlalchemy_app.seed(database, row["title"], row["body"]) != row["id"]:
        raise SystemExit("bench: the SQLAlchemy app's item has another id")
    servers.wait_for(direct["sqlalchemy"] + item)
    targets = {variant: mode_targets(variant, args.database) for variant in FRONTS[args.front]}
    urls = {"direct": direct}
    if args.front != "direct":
        loaded = targets[NGINX]
        urls["nginx"] = start_front(processes, args.template, project, direct, envs, item, loaded)
    return {
        "processes": processes,
        "urls": urls,
        "item": item,
        "scripts": {group: write_scripts(work, token, group) for group, token in tokens.items()},
        "variants": FRONTS[args.front],
        "targets": targets,
        "connections": [int(value) for value in args.connections.split(",")],
        "seconds": args.seconds,
    }


def add_postgresql(processes, work, args, overrides, direct, item):
    """The PostgreSQL stack started beside the others, with the same item: its token."""
    direct["stack-pg"], env = servers.start_postgresql(processes, work, args.template, overrides)
    token = servers.mint(env)
    if servers.seed(direct["stack-pg"], token) != item:
        raise SystemExit("bench: the PostgreSQL stack's item differs from the SQLite stack's")
    return token


def start_front(processes, template, project, direct, envs, item, targets):
    """nginx before each group that the targets loaded through it need, answering: their
    https URLs."""
    loaded = [TARGETS[target] for target in targets]
    upstreams = {group: int(direct[group].rsplit(":", 1)[1]) for group, _, _ in loaded}
    front = Front(template, project)
    processes.cleanups.append(front.close)
    urls = front.configure(upstreams, envs["stack"], servers.free_port)
    front.start(processes)
    for group, path, kind in loaded:
        if kind is None:
            servers.wait_for(urls[group] + path.format(item=item), cafile=front.cert)
    return urls


def report(setup, samples, out, rounds):
    """The tables printed, and the JSON written."""
    processes, connections_list = setup["processes"], setup["connections"]
    pss = {group: processes.pss_mb(group) for group in ("stack", "sync", "sqlalchemy")}
    table = summarise(samples)
    goals = target_rows(samples, pss, setup["variants"], connections_list)
    print(markdown(table, setup["variants"], connections_list))
    print(
        f"Whole-stack PSS after load (internal service + API with harden on): "
        f"{pss['stack']:.1f} MB; bare Flask (sync): {pss['sync']:.1f} MB; "
        f"SQLAlchemy app: {pss['sqlalchemy']:.1f} MB\n"
    )
    print(goals_markdown(goals))
    hop = {}
    if KEEPALIVE in setup["variants"]:
        hop = {c: round_ratio(samples, KEEPALIVE, ITEMS, HEALTH, c) for c in connections_list}
        print()
        print(hop_markdown(hop))
    results = {}
    for (variant, target), rows in table.items():
        results.setdefault(variant, {})[target] = {str(c): row for c, row in rows.items()}
    fields = ("target", "measured", "comparison", "limit")
    document = {
        "seconds": setup["seconds"],
        "rounds": rounds,
        "baseline": BASELINE,
        "pss_mb": pss,
        "hop_alone": {str(c): ratio for c, ratio in hop.items()},
        "targets": [dict(zip(fields, row, strict=True)) for row in goals],
        "results": results,
    }
    Path(out).write_text(json.dumps(document, indent=2))
    print(f"\nJSON: {out}", file=sys.stderr)


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--front",
        choices=sorted(FRONTS),
        default="both",
        help="direct (gunicorn alone, keep-alive and Connection: close clients), "
        "nginx (HTTPS through the generated site), or both (default)",
    )
    parser.add_argument(
        "--database",
        choices=["both", "sqlite"],
        default="both",
        help="both: items/<id> and POST items on a PostgreSQL stack too, beside the SQLite "
        "one (default); sqlite: without them (no cluster)",
    )
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=6, help="rounds (default 6)")
    parser.add_argument(
        "--connections", default="32", help="concurrencies, e.g. 8,32,64 (default 32)"
    )
    parser.add_argument("--out", default="bench-results.json", help="JSON output file")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"a {servers.PREFIX}_NAME setting for every server, e.g. --set WORKERS=3 (repeatable)",
    )
    parser.add_argument(
        "--template", default=str(TEMPLATE), help="template to bake (default: this one)"
    )
    return parser.parse_args()


def settings(items):
    overrides = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"bench: --set {item!r}: use NAME=VALUE")
        overrides[f"{servers.PREFIX}_{name}"] = value
    return overrides


def stop_on_sigterm(signum, frame):
    """SIGTERM as Ctrl-C: the finally below still stops every server."""
    raise KeyboardInterrupt


def main():
    args = arguments()
    overrides = settings(args.set)
    for tool in ("wrk", "nginx", "openssl") if args.front != "direct" else ("wrk",):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} is missing: apt-get install {tool}")
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    work = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
    processes = servers.Processes(work)
    try:
        setup = prepare(processes, work, args, overrides)
        samples = {}
        for round_number in range(args.rounds):
            one_round(setup, round_number, samples)
        report(setup, samples, args.out, args.rounds)
    finally:
        processes.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
