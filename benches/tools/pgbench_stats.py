#!/usr/bin/env python3
"""Helpers for benches/compare.sh: per-run latency statistics and the summary tables.

  pgbench_stats.py run LOGPREFIX          -> "avg_us p50_us p99_us n_logged n_failed"
  pgbench_stats.py summary RESULTS.tsv    -> markdown tables (medians over rounds, ratios)

RESULTS.tsv columns: group cell target round tps failed avg_us p50_us p99_us rc
                     proxy_cpu_us_per_txn proxy_ctxsw_per_txn pg_cpu_us_per_txn
"""

import glob
import statistics
import sys
from collections import OrderedDict, defaultdict


def run_stats(prefix):
    times = []
    failed = 0
    for path in glob.glob(prefix + ".*"):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                t = parts[2]
                if t.isdigit():
                    times.append(int(t))
                else:  # "failed" / "skipped" (pgbench 15)
                    failed += 1
    if not times:
        print("nan nan nan 0 %d" % failed)
        return
    times.sort()
    n = len(times)

    def pct(p):
        return times[min(n - 1, int(p * n))]

    print("%.1f %d %d %d %d" % (sum(times) / n, pct(0.50), pct(0.99), n, failed))


def med(xs):
    xs = [x for x in xs if x == x]  # drop NaN
    return statistics.median(xs) if xs else float("nan")


def fmt(x, digits=0):
    if x != x:
        return "n/a"
    return f"{x:,.{digits}f}"


def summary(path):
    rows = defaultdict(list)
    cells = OrderedDict()
    meta = {}
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                k, _, v = line[1:].strip().partition("=")
                meta[k.strip()] = v.strip()
                continue
            p = line.rstrip("\n").split("\t")
            if len(p) < 10 or p[0] == "group":
                continue
            group, cell, target = p[0], p[1], p[2]
            tps, failed, avg, p50, p99, rc = float(p[4]), int(p[5]), float(p[6]), float(p[7]), float(p[8]), int(p[9])
            cpu = float(p[10]) if len(p) > 10 else float("nan")
            sw = float(p[11]) if len(p) > 11 else float("nan")
            pg = float(p[12]) if len(p) > 12 else float("nan")
            rows[(group, cell, target)].append((tps, failed, avg, p50, p99, rc, cpu, sw, pg))
            seen = cells.setdefault(group, OrderedDict()).setdefault(cell, [])
            if target not in seen:
                seen.append(target)

    def agg(key):
        r = rows.get(key)
        if not r:
            return None
        return {
            "tps": med([x[0] for x in r]),
            "failed": sum(x[1] for x in r),
            "avg": med([x[2] for x in r]),
            "p50": med([x[3] for x in r]),
            "p99": med([x[4] for x in r]),
            "rounds": len(r),
            "errors": sum(1 for x in r if x[5] != 0),
            "spread": (min(x[0] for x in r), max(x[0] for x in r)),
            "cpu": med([x[6] for x in r]),
            "sw": med([x[7] for x in r]),
            "pg": med([x[8] for x in r]),
        }

    out = []
    for group, gcells in cells.items():
        targets = []
        for ts in gcells.values():
            for t in ts:
                if t not in targets:
                    targets.append(t)
        if group == "matrix":
            out.append("| cell | target | median TPS (min–max) | avg lat ms | p50 ms | p99 ms | failed | proxy CPU µs/txn | PostgreSQL CPU µs/txn | proxy ctx sw/txn | rounds |")
            out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        else:
            out.append(f"| {group} cell | target | median TPS (min–max) | avg lat ms | p50 ms | p99 ms | failed | proxy CPU µs/txn | PostgreSQL CPU µs/txn | proxy ctx sw/txn | rounds |")
            out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for cell in gcells:
            for t in targets:
                a = agg((group, cell, t))
                if a is None:
                    continue
                err = f" ({a['errors']} runs rc≠0)" if a["errors"] else ""
                out.append(
                    f"| {cell} | {t} | {fmt(a['tps'])} ({fmt(a['spread'][0])}–{fmt(a['spread'][1])}) | "
                    f"{fmt(a['avg'] / 1000, 3)} | {fmt(a['p50'] / 1000, 3)} | {fmt(a['p99'] / 1000, 3)} | "
                    f"{a['failed']}{err} | {fmt(a['cpu'], 1)} | {fmt(a['pg'], 1)} | {fmt(a['sw'], 2)} | {a['rounds']} |"
                )
        out.append("")
        if group == "matrix":
            out.append("| cell | tenantgate / PgBouncer (TPS) | tenantgate / direct (TPS) | added p50 vs direct µs | added p50 vs PgBouncer µs |")
            out.append("|---|---:|---:|---:|---:|")
            for cell in gcells:
                tg, pb, d = agg((group, cell, "tenantgate")), agg((group, cell, "pgbouncer")), agg((group, cell, "direct"))
                if tg is None:
                    continue
                r_pb = tg["tps"] / pb["tps"] if pb and pb["tps"] > 0 else float("nan")
                r_d = tg["tps"] / d["tps"] if d and d["tps"] > 0 else float("nan")
                dl = tg["p50"] - d["p50"] if d else float("nan")
                pl = tg["p50"] - pb["p50"] if pb else float("nan")
                out.append(f"| {cell} | {fmt(r_pb, 2)} | {fmt(r_d, 2)} | {fmt(dl)} | {fmt(pl)} |")
            out.append("")
            proto = []
            for cell in gcells:
                script, mode, clients = cell.split(":")
                if mode == "simple":
                    continue
                s, m = agg((group, f"{script}:simple:{clients}", "tenantgate")), agg((group, cell, "tenantgate"))
                if s and m and s["tps"] > 0:
                    proto.append(f"| {script} -c {clients} | {mode} | {fmt(m['tps'] / s['tps'], 3)} | {fmt(m['p50'] - s['p50'])} |")
            if proto:
                out.append("| through tenantgate | -M | TPS vs -M simple | p50 vs -M simple µs |")
                out.append("|---|---|---:|---:|")
                out.extend(proto)
                out.append("")
        elif group == "tenant":
            # Signed vs unsigned, and both against what applications do without the proxy.
            pairs = [("signed", "tenantgate"), ("signed", "pgbouncer_q"), ("tenantgate", "pgbouncer_q"),
                     ("signed", "pgbouncer_txn"), ("tenantgate", "pgbouncer_txn")]
            out.append("| tenant cell | ratio (TPS) | value | p50 difference µs |")
            out.append("|---|---|---:|---:|")
            for cell in gcells:
                for a_name, b_name in pairs:
                    a, b = agg((group, cell, a_name)), agg((group, cell, b_name))
                    if a and b and b["tps"] > 0:
                        out.append(f"| {cell} | {a_name} / {b_name} | {fmt(a['tps'] / b['tps'], 3)} | {fmt(a['p50'] - b['p50'])} |")
        elif group == "fairness":
            kinds = []
            for cell in gcells:
                k = cell.split(":")[1]
                if k not in kinds:
                    kinds.append(k)
            out.append("| flood | target | quiet p50 alone ms | quiet p99 alone ms | quiet p50 under flood ms | quiet p99 under flood ms | p99 flood / alone | flood TPS |")
            out.append("|---|---|---:|---:|---:|---:|---:|---:|")
            for k in kinds:
                for t in targets:
                    a = agg((group, f"quiet:{k}:alone", t))
                    f = agg((group, f"quiet:{k}:flood", t))
                    fl = agg((group, f"flood:{k}", t))
                    if a is None or f is None:
                        continue
                    ratio = f["p99"] / a["p99"] if a["p99"] > 0 else float("nan")
                    out.append(
                        f"| {k} | {t} | {fmt(a['p50'] / 1000, 3)} | {fmt(a['p99'] / 1000, 3)} | "
                        f"{fmt(f['p50'] / 1000, 3)} | {fmt(f['p99'] / 1000, 3)} | {fmt(ratio, 2)} | "
                        f"{fmt(fl['tps']) if fl else 'n/a'} |"
                    )
            out.append("")
        elif len(targets) == 2:
            a_name, b_name = targets
            out.append(f"| {group} cell | {a_name} / {b_name} (TPS) | p50 {a_name} − {b_name} µs |")
            out.append("|---|---:|---:|")
            for cell in gcells:
                a, b = agg((group, cell, a_name)), agg((group, cell, b_name))
                if a and b and b["tps"] > 0:
                    out.append(f"| {cell} | {fmt(a['tps'] / b['tps'], 3)} | {fmt(a['p50'] - b['p50'])} |")
            out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run_stats(sys.argv[2])
    elif sys.argv[1] == "summary":
        summary(sys.argv[2])
    else:
        sys.exit("usage: pgbench_stats.py run PREFIX | summary RESULTS.tsv")
