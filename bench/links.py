"""Benchmark: one full `link` collection of 5,000 interfaces against /proc/net/dev and psutil.

    .venv/bin/python bench/links.py [--interfaces 5000] [--rounds 15] [--cpu-seconds 20]

Makes a scratch namespace `lkbench<pid>` with N ifb interfaces (created with `ip -batch`,
dummy does not exist here), re-runs itself inside it (`ip netns exec`) so that every reader
sees the same interfaces, and deletes the namespace at the end (also on failure).

Measured in the same run, interleaved, median of --rounds:
- collect_ms: `LinksCollector.collect()` as the agent runs it: counters (RTM_GETSTATS dump)
  + state (cache kept by link notifications) + rates + utilization + one Point per
  interface. The first collection (full RTM_GETLINK dump, speeds) is `first_collect_ms`.
- stats_dump_ms / link_dump_ms: the two netlink dumps alone (link_dump_ms is what a
  collection would cost if it re-read all state every time instead of using notifications).
- proc_net_dev_ms: reading and splitting /proc/net/dev into integers per interface.
- psutil_ms: psutil.net_io_counters(pernic=True).
- steady_cpu_pct: CPU time of the process over wall time while collecting every 1 s for
  --cpu-seconds (percent of one core).
- events_idle_cpu_pct: the link_event collector idling on 3 uplinks (its 50 ms carrier
  poll), for half of --cpu-seconds; events_idle_cpu_pct_python_wait: the same with the
  poll's wait in Python (what runs when collectors/links/_carrier.c is not built).
Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def read_proc_net_dev() -> dict[str, list[int]]:
    with open("/proc/net/dev") as handle:
        lines = handle.read().split("\n")[2:]
    out = {}
    for line in lines:
        name, sep, rest = line.partition(":")
        if sep:
            out[name.strip()] = [int(v) for v in rest.split()]
    return out


def timed_ms(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def inner(args: argparse.Namespace) -> None:
    import psutil

    from agent.collector import CollectorContext
    from agent.config import parse_config
    from collectors.links.collector import LinksCollector
    from collectors.links.netlink import RtNetlink

    data_dir = Path(tempfile.mkdtemp(prefix="lkbench"))
    config = parse_config({"agent": {"hostname": "bench", "data_dir": str(data_dir)},
                           "links": {"include": ["*"], "exclude": ["lo"], "interval": "1s"}})
    ctx = CollectorContext(config=config, emit=lambda points: None, data_dir=data_dir)
    t0 = time.perf_counter()
    collector = LinksCollector(ctx)
    setup_ms = (time.perf_counter() - t0) * 1000.0
    t0 = time.perf_counter()
    points = collector.collect()
    first_ms = (time.perf_counter() - t0) * 1000.0
    n_points = len(points)
    nl = RtNetlink()
    stats_n = len(nl.dump_stats64())
    proc_n = len(read_proc_net_dev())
    ps_n = len(psutil.net_io_counters(pernic=True))

    runs: dict[str, list[float]] = {k: [] for k in
                                    ("collect", "stats", "links", "proc", "psutil")}
    for _ in range(args.rounds):
        runs["collect"].append(timed_ms(collector.collect))
        runs["proc"].append(timed_ms(read_proc_net_dev))
        runs["psutil"].append(timed_ms(lambda: psutil.net_io_counters(pernic=True)))
        runs["stats"].append(timed_ms(nl.dump_stats64))
        runs["links"].append(timed_ms(nl.dump_links))
    med = {k: statistics.median(v) for k, v in runs.items()}

    # Steady CPU: collect every second, as the scheduler would, for cpu_seconds.
    cpu0 = time.process_time()
    wall0 = time.monotonic()
    next_tick = wall0
    ticks = 0
    while time.monotonic() - wall0 < args.cpu_seconds:
        next_tick += 1.0
        collector.collect()
        ticks += 1
        time.sleep(max(0.0, next_tick - time.monotonic()))
    cpu_pct = (time.process_time() - cpu0) / (time.monotonic() - wall0) * 100.0
    collector.close()
    nl.close()
    events_cpu_pct = events_idle_cpu(data_dir, args.cpu_seconds / 2)
    events_python_cpu_pct = events_idle_cpu(data_dir, args.cpu_seconds / 2, python_wait=True)

    result = {
        "interfaces": stats_n - 1,  # without lo
        "collect_ms": round(med["collect"], 2),
        "ratio_vs_proc_net_dev": round(med["collect"] / med["proc"], 3),
        "ratio_vs_psutil": round(med["collect"] / med["psutil"], 3),
        "steady_cpu_pct": round(cpu_pct, 2),
        "events_idle_cpu_pct": round(events_cpu_pct, 3),
        "events_idle_cpu_pct_python_wait": round(events_python_cpu_pct, 3),
        "first_collect_ms": round(first_ms, 1),
        "setup_ms": round(setup_ms, 1),
        "stats_dump_ms": round(med["stats"], 2),
        "link_dump_ms": round(med["links"], 2),
        "proc_net_dev_ms": round(med["proc"], 2),
        "psutil_ms": round(med["psutil"], 2),
        "points": n_points,
        "seen": {"netlink": stats_n, "proc_net_dev": proc_n, "psutil": ps_n},
        "rounds": args.rounds,
        "cpu_ticks": ticks,
    }
    print(json.dumps(result))


def events_idle_cpu(data_dir: Path, seconds: float, python_wait: bool = False) -> float:
    """CPU of the link_event collector watching 3 uplinks (carrier poll every 50 ms)."""
    import asyncio

    from collectors.links import carrier

    if python_wait:
        carrier._carrier = None
    elif carrier._carrier is None:
        raise SystemExit("collectors/links/_carrier.c is not built (scripts/setup builds it)")
    from agent.collector import CollectorContext
    from agent.config import parse_config
    from collectors.links.collector import LinkEventCollector

    config = parse_config({
        "agent": {"hostname": "bench", "data_dir": str(data_dir)},
        "carriers": [{"name": f"c{i}", "interface": f"lkb{i}"} for i in range(3)],
    })
    ctx = CollectorContext(config=config, emit=lambda points: None, data_dir=data_dir)
    collector = LinkEventCollector(ctx)

    async def run() -> float:
        task = asyncio.create_task(collector.run())
        await asyncio.sleep(0.5)
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        pct = (time.process_time() - cpu0) / (time.monotonic() - wall0) * 100.0
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return pct

    return asyncio.run(run())


def outer(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print(json.dumps({"error": "needs root (network namespaces)"}))
        return 2
    ns = f"lkbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        t0 = time.perf_counter()
        batch = "".join(f"link add lkb{i} type ifb\n" for i in range(args.interfaces))
        batch += "".join(f"link set lkb{i} up\n" for i in range(args.interfaces))
        subprocess.run(["ip", "-n", ns, "-batch", "-"], input=batch, text=True, check=True)
        print(f"made {args.interfaces} ifb in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, __file__, "--inner",
             "--rounds", str(args.rounds), "--cpu-seconds", str(args.cpu_seconds)],
            capture_output=True, text=True, check=False)
        sys.stderr.write(proc.stderr)
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        if proc.returncode != 0 or not lines:
            print(json.dumps({"error": f"inner run failed: exit {proc.returncode}"}))
            return 1
        print(lines[-1])
        return 0
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interfaces", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--cpu-seconds", type=float, default=20.0)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args)
        return 0
    return outer(args)


if __name__ == "__main__":
    sys.exit(main())
