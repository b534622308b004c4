"""wrk's output read, the rounds summed up, and the tables printed."""

import re
import statistics

from plan import INFO_RATIOS, ITEMS, P99_GOALS, PSS_LIMIT_MB, RATIO_GOALS, VARIANTS

LATENCY_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(output):
    """rps, p50 and p99 in ms, and errors (socket errors plus non-2xx/3xx) from wrk --latency."""

    def latency(percent):
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        return float(match.group(1)) * LATENCY_UNITS[match.group(2)] if match else None

    errors = 0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(value) for value in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": latency(50),
        "p99_ms": latency(99),
        "errors": errors,
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
    }


def summarise(samples):
    """(mode, target) -> concurrency -> median/min/max of rps, medians of the rest, and
    the median and min of the ratios to the same round's baseline."""
    table = {}
    for (variant, target, connections), runs in samples.items():
        ratios = [run["ratio"] for run in runs if run.get("ratio") is not None]
        rps = [run["rps"] for run in runs]

        def median(key, runs=runs):
            return statistics.median(run[key] for run in runs)

        table.setdefault((variant, target), {})[connections] = {
            "rps_median": statistics.median(rps),
            "rps_min": min(rps),
            "rps_max": max(rps),
            "p50_ms": median("p50_ms"),
            "p99_ms": median("p99_ms"),
            "errors": sum(run["errors"] for run in runs),
            "cpu_us_per_request": median("cpu_us"),
            "internal_cpu_us_per_request": median("internal_cpu_us"),
            "idle_percent": median("idle_percent"),
            "ratio_median": statistics.median(ratios) if ratios else None,
            "ratio_min": min(ratios) if ratios else None,
        }
    return table


def round_ratio(samples, variant, target, other, connections, key="rps"):
    """Median over rounds of target's figure over other's, both from the same round."""
    pairs = zip(
        samples[(variant, target, connections)], samples[(variant, other, connections)], strict=True
    )
    return statistics.median(a[key] / b[key] for a, b in pairs)


def target_rows(samples, pss_mb, variants, connections_list):
    """Each goal against its figure, for each concurrency (or the one it names),
    in the modes that were run: (label, value, comparison, limit); then the
    figures held to nothing, whose targets were run, with comparison "info"."""
    rows = []
    goals = [(goal, "rps", ">=") for goal in RATIO_GOALS]
    goals += [(goal, "p99_ms", "<=") for goal in P99_GOALS]
    for (label, variant, target, other, limit, only), key, comparison in goals:
        if variant not in variants:
            continue
        for connections in connections_list if only is None else [only]:
            if connections in connections_list:
                value = round_ratio(samples, variant, target, other, connections, key)
                rows.append((f"{variant}: {label}, c{connections}", value, comparison, limit))
    rows.append(("whole-stack PSS after load ≤ 90 MB", pss_mb["stack"], "<=", PSS_LIMIT_MB))
    for label, variant, target, other in INFO_RATIOS:
        for connections in connections_list:
            if (variant, target, connections) in samples:
                value = round_ratio(samples, variant, target, other, connections)
                rows.append((f"{variant}: {label}, c{connections}", value, "info", None))
    return rows


def targets_markdown(rows):
    lines = ["| target | measured | met |", "|---|---|---|"]
    for name, value, comparison, limit in rows:
        if comparison == "info":
            met = "info"
        else:
            met = "yes" if (value >= limit if comparison == ">=" else value <= limit) else "no"
        figure = f"{value:.1f} MB" if "MB" in name else f"{value:.3f}×"
        lines.append(f"| {name} | {figure} | {met} |")
    return "\n".join(lines)


def hop_markdown(hop):
    """What the hop alone costs: items/<id> against health on the same stack, harden
    on both, so that the API's own layers cancel out."""
    header = " | ".join(f"c{connections}" for connections in hop)
    figures = " | ".join(f"{ratio:.2f}×" for ratio in hop.values())
    return "\n".join(
        [
            f"| hop alone: {ITEMS} ÷ health, same round | {header} |",
            "|---|" + "---|" * len(hop),
            f"| ratio | {figures} |",
        ]
    )


def row_markdown(target, connections, row):
    ratio = (
        f"{row['ratio_median']:.2f}× ({row['ratio_min']:.2f})"
        if row["ratio_median"] is not None
        else "1.00×"
    )
    return (
        f"| {target} | {connections} | {row['rps_median']:,.0f} "
        f"({row['rps_min']:,.0f}-{row['rps_max']:,.0f}) | {ratio} | {row['p50_ms']:.2f} "
        f"| {row['p99_ms']:.2f} | {row['errors']} | {row['cpu_us_per_request']:.0f} "
        f"| {row['internal_cpu_us_per_request']:.0f} | {row['idle_percent']:.1f} % |"
    )


def markdown(table, variants, connections_list):
    """One table per mode; ratios are to the mode's own baseline (its first target).
    A target that was not run (--database sqlite) has no rows."""
    lines = []
    for variant in variants:
        front, _, targets = VARIANTS[variant]
        cpu = "server CPU µs/req" + (" (nginx too)" if front == "nginx" else "")
        lines += [
            f"### {variant} (ratios to: {targets[0]})",
            "",
            f"| target | c | rps median (min-max) | ratio to baseline (min) | p50 ms | p99 ms "
            f"| errors | {cpu} | of it internal | machine idle |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for target in (target for target in targets if (variant, target) in table):
            for connections in connections_list:
                lines.append(
                    row_markdown(target, connections, table[(variant, target)][connections])
                )
        lines.append("")
    return "\n".join(lines)
