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
  collection would cost if it re-read all state every time instead of using notifications;
  what the agent pays once at start and after lost notifications). The link dumps are
  timed after the other rounds, not between them: pyroute2's messages leave reference
  cycles, and collecting the garbage of a 5,000-link dump would be billed to whichever
  collection came next, which the agent, dumping once, does not see every poll.
- proc_net_dev_ms: reading and splitting /proc/net/dev into integers per interface.
- psutil_ms: psutil.net_io_counters(pernic=True).
- steady_cpu_pct: CPU time of the process over wall time while collecting every 1 s for
  --cpu-seconds (percent of one core).
- events_idle_cpu_pct: the link_event collector idling on 3 uplinks (its 100 ms carrier
  poll), for half of --cpu-seconds; events_idle_cpu_pct_python_wait: the same with the
  poll's wait in Python (what runs when collectors/links/_carrier.c is not built).
- p2_*: pyroute2's own candidate paths for the same counters, in the same run (the product
  uses the lean `IFLA_STATS_LINK_64` parser only because these miss the goal):
  p2_iproute_stats_ms `IPRoute().stats('dump', filter_mask=1)`; p2_ifstatsmsg_ms an
  `IPRSocket` dump decoded by pyroute2's `ifstatsmsg`; p2_stats64_class_ms the same with a
  message class that maps only `IFLA_STATS_LINK_64`; p2_get_links_ms `IPRoute().get_links()`
  (one round: seconds). Each with its ratio to proc_net_dev_ms.
- lab3_*: the lab's shape in a second namespace: 3 carrier uplinks (ifb, IPv4 and IPv6
  default routes in tables 101-103, permanent neighbours, source rules), `LinksCollector`
  with the routing checks, as the agent polls it. lab3_collect_cpu_ms is the CPU of one
  collection (median of --rounds x 10, nothing changing), lab3_routing_check_cpu_ms that
  of the routing checks of all three (what a poll adds after an announced change),
  lab3_cpu_pct_at_5s the poll's share of a core at the lab's 5 s interval with one full
  check per RECHECK_S (where the code has no RECHECK_S, every poll checks and
  lab3_collect_cpu_ms already holds it).
Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import socket
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
    gc.collect()  # what the start-up dump left
    gc.freeze()  # as the daemon does once its collectors have polled (agent/gcsettle.py)
    for _ in range(args.rounds):
        runs["collect"].append(timed_ms(collector.collect))
        runs["proc"].append(timed_ms(read_proc_net_dev))
        runs["psutil"].append(timed_ms(lambda: psutil.net_io_counters(pernic=True)))
        runs["stats"].append(timed_ms(nl.dump_stats64))
    for _ in range(max(3, args.rounds // 5)):
        runs["links"].append(timed_ms(nl.dump_links))
    gc.collect()
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

    p2 = pyroute2_paths(args.rounds, med["proc"])

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
        **p2,
    }
    print(json.dumps(result))


def pyroute2_paths(rounds: int, proc_ms: float) -> dict[str, float]:
    """pyroute2's own ways to read every interface's 64-bit counters, timed here."""
    from pyroute2 import IPRoute, IPRSocket
    from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST, nlmsg
    from pyroute2.netlink.rtnl import RTM_GETSTATS, RTM_NEWSTATS
    from pyroute2.netlink.rtnl.ifstatsmsg import ifstatsmsg

    class stats64msg(nlmsg):
        fields = ifstatsmsg.fields
        nla_map = ((1, "IFLA_STATS_LINK_64", "ifstats64"),)
        ifstats64 = ifstatsmsg.ifstats64

    def socket_dump(sock: IPRSocket, msg_class: type) -> int:
        sock.marshal.msg_map[RTM_NEWSTATS] = msg_class
        request = ifstatsmsg()
        request["filter_mask"] = 1
        sock.put(request, msg_type=RTM_GETSTATS, msg_flags=NLM_F_REQUEST | NLM_F_DUMP)
        out = {}
        while True:
            for msg in sock.marshal.parse(sock.socket.recv(1 << 20)):
                if msg["header"]["type"] != RTM_NEWSTATS:
                    return len(out)
                st = msg.get_attr("IFLA_STATS_LINK_64")
                out[msg["ifindex"]] = (st["rx_packets"], st["tx_packets"], st["rx_bytes"],
                                       st["tx_bytes"])

    ipr = IPRoute()
    sock = IPRSocket(rcvbuf=4 << 20)
    sock.bind(groups=0)
    runs: dict[str, list[float]] = {k: [] for k in ("iproute_stats", "ifstatsmsg", "stats64")}
    for _ in range(max(3, rounds // 3)):
        runs["iproute_stats"].append(
            timed_ms(lambda: list(ipr.stats("dump", filter_mask=1))))
        runs["ifstatsmsg"].append(timed_ms(lambda: socket_dump(sock, ifstatsmsg)))
        runs["stats64"].append(timed_ms(lambda: socket_dump(sock, stats64msg)))
    get_links_ms = timed_ms(lambda: list(ipr.get_links()))
    sock.close()
    ipr.close()
    out: dict[str, float] = {}
    for key, values in runs.items():
        ms = statistics.median(values)
        name = {"iproute_stats": "iproute_stats", "ifstatsmsg": "ifstatsmsg",
                "stats64": "stats64_class"}[key]
        out[f"p2_{name}_ms"] = round(ms, 1)
        out[f"p2_{name}_ratio"] = round(ms / proc_ms, 2)
    out["p2_get_links_ms"] = round(get_links_ms, 1)
    out["p2_get_links_ratio"] = round(get_links_ms / proc_ms, 1)
    return out


LAB3 = (("telecom", 1, 101), ("unicom", 2, 102), ("mobile", 3, 103))


def lab3_setup(ns: str) -> None:
    """3 uplinks as the lab has them, without the carriers behind (permanent neighbours)."""
    cmds = []
    for name, n, table in LAB3:
        cmds += [f"link add {name} type ifb", f"link set {name} up",
                 f"addr add 100.64.{n}.2/30 dev {name}",
                 f"-6 addr add 2001:db8:{n}::2/64 dev {name} nodad",
                 f"neigh replace 100.64.{n}.1 lladdr 02:00:00:00:00:0{n} dev {name} nud permanent",
                 f"-6 neigh replace 2001:db8:{n}::1 lladdr 02:00:00:00:00:0{n} dev {name} "
                 "nud permanent",
                 f"route add default via 100.64.{n}.1 dev {name} table {table}",
                 f"-6 route add default via 2001:db8:{n}::1 dev {name} table {table}",
                 f"rule add from 100.64.{n}.2 lookup {table}",
                 f"-6 rule add from 2001:db8:{n}::2 lookup {table}"]
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                    "net.ipv6.conf.all.disable_ipv6=0"], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
    for cmd in cmds:  # one by one: -batch does not take the -6 prefix
        subprocess.run(["ip", "-n", ns, *cmd.split()], check=True)


def inner_lab3(args: argparse.Namespace) -> None:
    from agent.collector import CollectorContext
    from agent.config import parse_config
    from collectors.links import routing as routing_module
    from collectors.links.collector import LinksCollector
    from collectors.links.routing import RoutingMonitor

    data_dir = Path(tempfile.mkdtemp(prefix="lkbench"))
    config = parse_config({
        "agent": {"hostname": "bench", "data_dir": str(data_dir), "interval": "5s"},
        "carriers": [{"name": name, "interface": name, "source": f"100.64.{n}.2",
                      "source6": f"2001:db8:{n}::2", "committed_mbps": 80, "table": table}
                     for name, n, table in LAB3],
        "links": {"include": [name for name, _, _ in LAB3], "exclude": ["lo"]},
    })
    ctx = CollectorContext(config=config, emit=lambda points: None, data_dir=data_dir)
    routing = RoutingMonitor(config.carriers)
    collector = LinksCollector(ctx, routing=routing)
    points = collector.collect()
    fields = [p.fields for p in points if p.measurement == "link"]
    checks_ok = len(fields) == 3 and all(
        f.get(k) is True for f in fields for k in ("route_ok", "gateway_ok", "egress_ok",
                                                   "route6_ok", "gateway6_ok", "egress6_ok"))
    cpu: list[float] = []
    for _ in range(args.rounds * 10):
        c0 = time.process_time()
        collector.collect()
        cpu.append((time.process_time() - c0) * 1000.0)
    # The checks themselves, as a poll runs them after an announced change or every
    # RECHECK_S (older code: at every poll, so there lab3_collect_cpu_ms includes them).
    indices = {name: socket.if_nametoindex(name) for name, _, _ in LAB3}
    full: list[float] = []
    for _ in range(args.rounds * 2):
        c0 = time.process_time()
        routing.check(indices)
        full.append((time.process_time() - c0) * 1000.0)
    collector.close()
    routing.close()
    cpu_ms = statistics.median(cpu)
    full_ms = statistics.median(full)
    recheck_s = getattr(routing_module, "RECHECK_S", None)
    # at 5 s: every poll, plus one full check per RECHECK_S when nothing is announced
    per_poll_ms = cpu_ms + (full_ms * 5.0 / recheck_s if recheck_s else 0.0)
    print(json.dumps({"lab3_collect_cpu_ms": round(cpu_ms, 3),
                      "lab3_routing_check_cpu_ms": round(full_ms, 3),
                      "lab3_cpu_pct_at_5s": round(per_poll_ms / 5000.0 * 100.0, 3),
                      "lab3_checks_ok": checks_ok}))


def events_idle_cpu(data_dir: Path, seconds: float, python_wait: bool = False) -> float:
    """CPU of the link_event collector watching 3 uplinks (carrier poll: CARRIER_POLL_S)."""
    import asyncio

    from collectors.links import carrier

    if python_wait:
        carrier._carrier = None
    elif carrier._carrier is None:
        raise SystemExit("collectors/links/_carrier.c is not built (scripts/setup builds it)")
    from agent.collector import CollectorContext
    from agent.config import parse_config
    from collectors.links.events import LinkEventCollector

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
    ns3 = f"lkbench{os.getpid()}c"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "netns", "add", ns3], check=True)
    try:
        lab3_setup(ns3)
        proc3 = subprocess.run(
            ["ip", "netns", "exec", ns3, sys.executable, __file__, "--inner-lab3",
             "--rounds", str(args.rounds)], capture_output=True, text=True, check=False)
        sys.stderr.write(proc3.stderr)
        lines3 = [line for line in proc3.stdout.splitlines() if line.strip()]
        if proc3.returncode != 0 or not lines3:
            print(json.dumps({"error": f"lab3 run failed: exit {proc3.returncode}"}))
            return 1
        lab3 = json.loads(lines3[-1])
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
        print(json.dumps({**json.loads(lines[-1]), **lab3}))
        return 0
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["ip", "netns", "del", ns3], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interfaces", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--cpu-seconds", type=float, default=20.0)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inner-lab3", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args)
        return 0
    if args.inner_lab3:
        inner_lab3(args)
        return 0
    return outer(args)


if __name__ == "__main__":
    sys.exit(main())
