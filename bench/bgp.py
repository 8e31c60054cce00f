"""BGP: the real table from BIRD through ExaBGP into the agent, against a bare consumer.

    sudo .venv/bin/python bench/bgp.py [--carriers 3] [--exabgp .venv/bin/exabgp]

The lab (tests/lab) brings up N carrier BIRDs, each announcing the real table of
tests/fixtures/mrt/updates.et-header.2015.gz (577,706 prefixes) to the agent namespace.
In the same run, twice, ExaBGP (the same executable and neighbor configuration) receives
the tables:
1. baseline: its API process only reads the stream and parses each line's JSON (the
   floor of any consumer); it stops when every neighbor's IPv4 End-of-RIB has arrived;
2. agent: the bgp collector as the daemon runs it (supervisor, bridge process, state,
   RIB, detectors), in a process of its own; it stops when every carrier's table is
   complete (exact count and End-of-RIB).
CPU is user+system time of each process over the load (from just before ExaBGP starts
to the table being complete); the agent's figure includes its bridge process. Memory is
the agent process's RSS growth from before ExaBGP starts to all tables held (after a
gc), per route held. Longest-prefix lookups: addresses half inside announced prefixes,
half uniformly random, on one carrier's table (`lpm_lookups_per_s`) and through the
`bgp.lookup` handler's function for all carriers (`lookup_calls_per_s`).

RPKI route origin validation is on unless `--vrps 0`: the agent reads a VRP file
(`[bgp.rpki] vrp_file`, the rpki-client JSON format) before the tables arrive, so every
route is validated as it comes in. The VRPs are synthetic but shaped like the real set,
derived from the table itself (seeded): for most prefixes a ROA of its origin (some with
a maxLength above the prefix length), covering aggregates with maxLength 24, ROAs of
another AS (invalid routes), AS0 ROAs, ROAs for space nobody announces, and IPv6 ROAs;
`--vrps` sets the total (default 600,000). The VRP index is measured apart: RSS growth
of the VRP load (after gc and malloc_trim, so the parser's garbage is not counted) per
VRP, and the index's own objects (sys.getsizeof) per VRP. After the load, 1 % of the VRPs
are changed in the file; the agent sees the new file, re-validates every route of every
carrier (`revalidate_s`, goal < 2 s, the agent's own timing of that step; also taken
three times more directly, `revalidate_direct_s`, the median), and the time from the file
being replaced to the new counts is `vrp_change_applied_s` (re-reading the JSON included).
Before that, 0.05 % are changed: only the routes in /16s those VRPs touch are validated
again (`small_change_revalidate_s`, `small_change_revalidated_routes`).

Prints progress, then one JSON line last:
{"prefixes", "agent_cpu_s", "exabgp_cpu_s", "cpu_ratio", "rib_bytes_per_route",
 "lpm_lookups_per_s", ..., "rov", "vrps", "vrp_bytes_per_vrp", "revalidate_s", ...}.
Goals: cpu_ratio <= 0.25, rib_bytes_per_route <= 150, lpm_lookups_per_s >= 200,000,
revalidate_s < 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXABGP = str(ROOT / ".venv" / "bin" / "exabgp")
MRT = ROOT / "tests" / "fixtures" / "mrt" / "updates.et-header.2015.gz"


def cpu_self_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_cpu_s(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def make_config(spec: dict[str, Any], exabgp: str) -> Any:
    from agent.config import parse_config

    bgp: dict[str, Any] = {
        "local_as": spec["local_as"], "router_id": spec["carriers"][0]["local"],
        "announce": spec["announce"], "watch": spec["watch"], "exabgp": exabgp}
    if spec.get("vrp_file"):
        bgp["rpki"] = {"vrp_file": spec["vrp_file"], "refresh": "1s", "stale_after": "1d"}
    return parse_config({
        "agent": {"hostname": "bench", "interval": "10s"},
        "carriers": [{"name": c["name"], "interface": c["name"], "bgp": {
            "peer": c["peer"], "peer_as": c["asn"], "local_address": c["local"],
            "hold_time": 180}} for c in spec["carriers"]],
        "bgp": bgp,
    })


# ---------------------------------------------------------------- synthetic VRPs


def table_origins(routes_file: Path) -> list[tuple[str, int]]:
    """(prefix, origin AS) of the lab's BIRD routes file of the MRT table."""
    out = []
    with open(routes_file) as fh:
        for line in fh:
            if not line.startswith("route "):
                continue
            prefix = line.split(None, 2)[1]
            start = line.find("bgp_path.prepend(")
            if start < 0:
                continue
            start += len("bgp_path.prepend(")
            out.append((prefix, int(line[start:line.index(")", start)])))
    return out


def synthetic_vrps(table: list[tuple[str, int]], total: int, seed: int = 15
                   ) -> list[dict[str, Any]]:
    """About `total` VRPs shaped like the real set (see the module docstring)."""
    import ipaddress

    rng = random.Random(seed)
    vrps: list[dict[str, Any]] = []
    seen: set[tuple[str, int, int]] = set()

    def add(prefix: str, max_length: int, asn: int) -> None:
        if (prefix, max_length, asn) not in seen:
            seen.add((prefix, max_length, asn))
            vrps.append({"asn": f"AS{asn}", "prefix": prefix, "maxLength": max_length,
                         "ta": rng.choice(("ripe", "arin", "apnic", "lacnic", "afrinic"))})

    v6_share, unannounced_share = 0.18, 0.08
    target_v4 = int(total * (1 - v6_share))
    with_roa: set[tuple[int, int]] = set()  # (network, length) given a ROA of their own
    for prefix, origin in sorted(table, key=lambda item: int(item[0].split("/")[1])):
        if len(vrps) >= target_v4 * (1 - unannounced_share):
            break
        net = ipaddress.ip_network(prefix)
        length, network = net.prefixlen, int(net.network_address)
        if length == 0:
            continue
        # holders of a ROA cover their more-specifics too (else those are invalid)
        parent = any(((network >> (32 - n)) << (32 - n), n) in with_roa
                     for n in range(8, length))
        roll = rng.random() * (0.548 / 0.97 if parent else 1.0)
        if roll < 0.52:  # a ROA of its own origin
            with_roa.add((network, length))
            add(prefix, length if rng.random() < 0.9 or length >= 24 else min(24, length + 2),
                origin)
        elif roll < 0.53 and length > 12:  # an aggregate with room for more-specifics
            agg = ipaddress.ip_network(prefix).supernet(new_prefix=max(8, length - 2))
            add(str(agg), max(24, agg.prefixlen), origin)
        elif roll < 0.54:  # another AS holds the ROA: this route is invalid
            add(prefix, length, rng.randrange(64512, 65534))
        elif roll < 0.543:  # AS0: must not be routed
            add(prefix, length, 0)
        elif roll < 0.548 and length > 16:  # maxLength shorter than what is announced
            add(str(ipaddress.ip_network(prefix).supernet(new_prefix=length - 1)),
                length - 1, origin)
        # else: no ROA (not found)
    while len(vrps) < target_v4:  # space nobody announces in this table
        length = rng.choice((22, 23, 24, 24, 24))
        network = rng.getrandbits(length) << (32 - length)
        add(f"{ipaddress.IPv4Address(network)}/{length}", length, rng.randrange(1, 400000))
    while len(vrps) < total:  # IPv6
        length = rng.choice((29, 32, 32, 36, 40, 44, 48, 48, 48))
        network = ((0x2 << 125) | (rng.getrandbits(length - 3) << (128 - length)))
        add(f"{ipaddress.IPv6Address(network)}/{length}",
            length if rng.random() < 0.7 else 48, rng.randrange(1, 400000))
    return vrps


def malloc_trim() -> None:
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def index_bytes(index: Any) -> int:
    """The VRP index's own objects (dicts, keys, payloads, tuples)."""
    total = 0
    seen: set[int] = set()
    for table in (index.v4, index.v6):
        total += sys.getsizeof(table.buckets)
        for vrps in table.by_length:
            total += sys.getsizeof(vrps)
            for key, payload in vrps.items():
                total += sys.getsizeof(key)
                for p in (payload,) if type(payload) is int else payload:
                    if id(p) not in seen:  # shared payloads count once
                        seen.add(id(p))
                        total += sys.getsizeof(p)
                if type(payload) is tuple:
                    total += sys.getsizeof(payload)
        for key, mask in table.buckets.items():
            total += sys.getsizeof(key) + sys.getsizeof(mask)
    return total


# ---------------------------------------------------------------- baseline consumer


def role_consumer(result_path: str, peers: int) -> int:
    """ExaBGP API process: parse every line's JSON, stop at every peer's IPv4 EoR."""
    import psutil

    started = cpu_self_s()
    exabgp = psutil.Process(os.getppid())
    eors: set[str] = set()
    lines = 0
    for line in sys.stdin:
        lines += 1
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if not isinstance(data, dict) or data.get("type") != "update":
            continue
        message = data["neighbor"]["message"]
        eor = message.get("eor")
        if eor and eor.get("afi") == "ipv4":
            eors.add(data["neighbor"]["address"]["peer"])
            if len(eors) == peers:
                times = exabgp.cpu_times()
                Path(result_path).write_text(json.dumps({
                    "consumer_cpu_s": cpu_self_s() - started,
                    "exabgp_cpu_s": times.user + times.system,
                    "lines": lines,
                }))
    return 0


def role_baseline(spec: dict[str, Any], exabgp: str) -> dict[str, Any]:
    from collectors.bgp.exabgp import command_line, config_text, detect_version, env_text
    from collectors.bgp.state import BgpState
    from tests.lab.wait import NotYet, wait_until

    config = make_config(spec, exabgp)
    state = BgpState(config)
    work = Path(tempfile.mkdtemp(prefix="bench-bgp-baseline-"))
    result = work / "result.json"
    text = config_text(config, state.sessions, state.own, work / "unused.sock", 1)
    run_line = (f"    run {sys.executable} {Path(__file__).resolve()} --role consumer "
                f"--result {result} --peers {len(spec['carriers'])};")
    text = "\n".join(run_line if line.strip().startswith("run ") else line
                     for line in text.splitlines())
    (work / "exabgp.conf").write_text(text)
    (work / "exabgp.env").write_text(env_text())
    version = detect_version(exabgp)
    argv = command_line(exabgp, version, work / "exabgp.env", work / "exabgp.conf")
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)

    def finished(_left: float) -> dict[str, Any]:
        try:  # absent, or still being written: not yet
            return dict(json.loads(result.read_text()))
        except (OSError, ValueError) as exc:
            if proc.poll() is not None:
                raise RuntimeError(f"ExaBGP exited with {proc.returncode} in the baseline"
                                   ) from exc
            raise NotYet(f"no complete {result} yet ({type(exc).__name__})") from exc

    try:
        figures = wait_until(finished, 1800, "the baseline consumer's result (every "
                             "neighbor's IPv4 End-of-RIB)", interval_s=0.2)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    figures["wall_s"] = time.monotonic() - started
    figures["exabgp_version"] = version.text
    return figures


# ---------------------------------------------------------------- the agent


def role_agent(spec: dict[str, Any], exabgp: str) -> dict[str, Any]:
    import psutil

    from agent.collector import CollectorContext
    from collectors.bgp import BgpStreamCollector, RpkiCollector, create
    from collectors.bgp.rib import V4, parse_prefix

    config = make_config(spec, exabgp)
    work = Path(tempfile.mkdtemp(prefix="bench-bgp-agent-"))
    events: list[Any] = []
    ctx = CollectorContext(config, events.extend, work)
    collectors = create(ctx).collectors
    stream = next(c for c in collectors if isinstance(c, BgpStreamCollector))
    rpki = next(c for c in collectors if isinstance(c, RpkiCollector))
    state = stream.state
    expected = {c["name"]: c["expected_v4"] for c in spec["carriers"]}
    me = psutil.Process()
    gc.collect()
    malloc_trim()
    rss_start = me.memory_info().rss
    rov_figures: dict[str, Any] = {}

    async def load_vrps() -> Any:
        """[bgp.rpki] on: the VRP file read before the tables come (ROV on the hot path)."""
        started = time.monotonic()
        task = asyncio.ensure_future(rpki.run())
        while state.rov is None or state.rov.index is None:
            await asyncio.sleep(0.05)
            if task.done():
                task.result()
        rov_figures["vrp_load_s"] = time.monotonic() - started
        return task

    async def change_vrps() -> None:
        """VRPs changed in the file, twice: 0.05 % (the size of an hour's churn: the
        routes those VRPs can cover are validated again), then 1 % (more than the
        incremental path takes: every route validated again). Time to new counts, and
        the agent's own timing of the re-validation."""
        assert state.rov is not None
        from collectors.bgp.rpki.vrp import write_vrp_json

        before = {n: state.rov.session_fields(n) for n in state.sessions}
        vrps = json.loads(Path(spec["vrp_file"]).read_text())["roas"]
        rng = random.Random(99)
        for share, name in ((0.0005, "small"), (0.01, "full")):
            for i in rng.sample(range(len(vrps)), int(len(vrps) * share)):
                vrps[i]["asn"] = "AS64999" if i % 2 else "AS0"
            revalidations = state.rov.revalidations
            changed = time.monotonic()
            write_vrp_json(spec["vrp_file"], vrps)
            while state.rov.revalidations == revalidations:
                await asyncio.sleep(0.01)
            rov_figures[f"{name}_change_applied_s"] = time.monotonic() - changed
            rov_figures[f"{name}_revalidate_s"] = state.rov.last_revalidation_s
            rov_figures[f"{name}_revalidated_routes"] = state.rov.last_revalidated_routes
        rov_figures["vrp_change_applied_s"] = rov_figures["full_change_applied_s"]
        rov_figures["revalidate_s"] = rov_figures["full_revalidate_s"]
        after = {n: state.rov.session_fields(n) for n in state.sessions}
        rov_figures["rpki_before_change"] = before
        rov_figures["rpki_after_change"] = after
        direct = []
        for _ in range(3):
            t0 = time.perf_counter()
            state.rov.revalidate(state.sessions.values())
            direct.append(time.perf_counter() - t0)
        rov_figures["revalidate_direct_s"] = sorted(direct)[1]
        assert {n: state.rov.session_fields(n) for n in state.sessions} == after

    async def load() -> dict[str, Any]:
        rpki_task = None
        if spec.get("vrp_file"):
            rpki_task = await load_vrps()
            assert state.rov is not None and state.rov.index is not None
            gc.collect()
            malloc_trim()
            rov_figures["vrps"] = len(state.rov.index)
            rov_figures["vrp_rss_bytes"] = me.memory_info().rss - rss_start
            rov_figures["vrp_index_bytes"] = index_bytes(state.rov.index)
        rss_before = me.memory_info().rss
        figures_memory["rss_before"] = rss_before
        loaded = False
        cpu_start = cpu_self_s()
        started = last = last_change = time.monotonic()
        last_total = -1
        task = asyncio.ensure_future(stream.run())
        try:
            while True:
                await asyncio.sleep(0.2)
                if task.done():
                    task.result()
                done = all(len(s.rib.v4) == expected[name] and V4 in s.converge_s
                           for name, s in state.sessions.items())
                if done:
                    break
                total = sum(len(s.rib) for s in state.sessions.values())
                if total != last_total:
                    last_total, last_change = total, time.monotonic()
                elif time.monotonic() - last_change > 120:
                    raise TimeoutError(f"no progress for 120 s: {state.status()} "
                                       f"{stream.supervisor.status()}")
                if int(time.monotonic() - started) % 10 == 0 and time.monotonic() - last > 5:
                    last = time.monotonic()
                    counts = {n: (len(s.rib.v4), s.state, s.converge_s)
                              for n, s in state.sessions.items()}
                    print(f"agent: {time.monotonic() - started:.0f}s {counts} "
                          f"{stream.supervisor.status()['last_exit']} {state.stats.as_dict()}",
                          file=sys.stderr, flush=True)
            agent_cpu = cpu_self_s() - cpu_start
            process = stream.supervisor.process
            assert process is not None
            exabgp_proc = psutil.Process(process.pid)
            exabgp_cpu = proc_cpu_s(process.pid)
            bridge_cpu = sum(proc_cpu_s(child.pid) for child in exabgp_proc.children())
            loaded = True
            return {"agent_process_cpu_s": agent_cpu, "bridge_cpu_s": bridge_cpu,
                    "exabgp_cpu_s": exabgp_cpu, "wall_s": time.monotonic() - started}
        finally:
            # measure memory while ExaBGP still runs and before the tables are dropped
            gc.collect()
            figures_memory["rss_after"] = me.memory_info().rss
            figures_memory["routes"] = sum(len(s.rib) for s in state.sessions.values())
            figures_memory["attribute_sets"] = len(state.interner)
            figures_memory.update(lookups(state, spec))
            if rpki_task is not None:
                if loaded and not task.done():
                    await change_vrps()
                rpki_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await rpki_task
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def lookups(state: Any, spec: dict[str, Any]) -> dict[str, Any]:
        rng = random.Random(42)
        first = next(iter(state.sessions.values()))
        keys = list(first.rib.v4.routes)
        addresses = []
        for _ in range(100_000):
            if rng.random() < 0.5:
                key = rng.choice(keys)
                network, length = key >> 8, key & 0xFF
                addresses.append(network | (rng.getrandbits(32) & ((1 << (32 - length)) - 1)))
            else:
                addresses.append(rng.getrandbits(32))
        table = first.rib.v4
        lookup = table.lookup
        t0 = time.perf_counter()
        hits = 0
        for address in addresses:
            if lookup(address) is not None:
                hits += 1
        lpm_s = time.perf_counter() - t0
        texts = [f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"
                 for a in addresses[:20_000]]
        t0 = time.perf_counter()
        for text in texts:
            state.lookup(text)
        call_s = time.perf_counter() - t0
        # sanity: the LPM agrees with the table for announced prefixes themselves
        for key in rng.sample(keys, 1000):
            found = lookup(key >> 8, key & 0xFF)
            assert found is not None and found[0] == key
        parse_prefix("10.0.0.0/8")
        return {"lpm_lookups_per_s": len(addresses) / lpm_s, "lpm_hit_ratio": hits / len(addresses),
                "lookup_calls_per_s": len(texts) / call_s}

    figures_memory: dict[str, Any] = {}
    figures = asyncio.run(load())
    shutil.rmtree(work, ignore_errors=True)
    rss_before = figures_memory["rss_before"]
    growth = figures_memory["rss_after"] - rss_before
    figures.update({
        "agent_cpu_s": figures["agent_process_cpu_s"] + figures["bridge_cpu_s"],
        "rss_before_bytes": rss_before,
        "rss_growth_bytes": growth,
        "routes_held": figures_memory["routes"],
        "rib_bytes_per_route": growth / max(1, figures_memory["routes"]),
        "attribute_sets": figures_memory["attribute_sets"],
        "lpm_lookups_per_s": figures_memory["lpm_lookups_per_s"],
        "lpm_hit_ratio": figures_memory["lpm_hit_ratio"],
        "lookup_calls_per_s": figures_memory["lookup_calls_per_s"],
        "bad_lines": state.stats.bad_lines,
        "events": len(events),
        "rov": rov_figures,
    })
    return figures


# ---------------------------------------------------------------- driver


def run_role(lab: Any, role: str, spec: dict[str, Any], exabgp: str) -> dict[str, Any]:
    argv = ["ip", "netns", "exec", lab.agent_ns, sys.executable, str(Path(__file__).resolve()),
            "--role", role, "--spec", json.dumps(spec), "--exabgp", exabgp]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{role} failed ({proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--carriers", type=int, default=3, choices=(1, 2, 3))
    parser.add_argument("--exabgp", default=EXABGP)
    parser.add_argument("--role", choices=("baseline", "agent", "consumer"))
    parser.add_argument("--spec")
    parser.add_argument("--result")
    parser.add_argument("--peers", type=int)
    parser.add_argument("--vrps", type=int, default=600_000,
                        help="synthetic VRPs for route origin validation (0: ROV off)")
    args = parser.parse_args()
    if args.role == "consumer":
        return role_consumer(args.result, args.peers)
    if args.role in ("baseline", "agent"):
        spec = json.loads(args.spec)
        figures = (role_baseline if args.role == "baseline" else role_agent)(spec, args.exabgp)
        print(json.dumps(figures))
        return 0

    if os.geteuid() != 0 or shutil.which("bird") is None:
        print("bench/bgp.py: needs root and bird (the lab)", file=sys.stderr)
        return 2
    if not MRT.exists():
        print(f"bench/bgp.py: MRT fixture absent: {MRT}", file=sys.stderr)
        return 2
    from tests.lab.lab import (
        ANNOUNCE,
        DEFAULT_CARRIERS,
        LOCAL_AS,
        WATCH,
        Lab,
        LabSpec,
        remove_workdir,
    )
    from tests.lab.routes import mrt_routes_file

    lab = Lab(LabSpec(carriers=list(DEFAULT_CARRIERS[: args.carriers]), routes="mrt",
                      servers=False))
    vrp_dir = Path(tempfile.mkdtemp(prefix="bench-bgp-vrps-"))
    try:
        t0 = time.monotonic()
        lab.up()
        print(f"lab up with {args.carriers} carrier(s), real table each "
              f"({time.monotonic() - t0:.1f}s)", file=sys.stderr, flush=True)
        spec = {
            "local_as": LOCAL_AS, "announce": list(ANNOUNCE), "watch": list(WATCH),
            "carriers": [{"name": c.name, "asn": c.asn, "peer": c.gateway, "local": c.source,
                          "expected_v4": c.expected_routes()[0]} for c in lab.carriers],
        }
        if args.vrps:
            from collectors.bgp.rpki.vrp import write_vrp_json

            t0 = time.monotonic()
            table = table_origins(mrt_routes_file(lab.carriers[0].asn)[0])
            vrps = synthetic_vrps(table, args.vrps)
            spec["vrp_file"] = str(vrp_dir / "vrps.json")
            write_vrp_json(spec["vrp_file"], vrps, generated_s=time.time())
            os.chmod(vrp_dir, 0o755)
            print(f"{len(vrps)} synthetic VRPs from {len(table)} prefixes "
                  f"({time.monotonic() - t0:.1f}s)", file=sys.stderr, flush=True)
        baseline = run_role(lab, "baseline", spec, args.exabgp)
        print(f"baseline: {json.dumps(baseline)}", file=sys.stderr, flush=True)
        agent = run_role(lab, "agent", spec, args.exabgp)
        print(f"agent: {json.dumps(agent)}", file=sys.stderr, flush=True)
    finally:
        lab.down()
        remove_workdir(lab.workdir)
        shutil.rmtree(vrp_dir, ignore_errors=True)
    prefixes = sum(c["expected_v4"] for c in spec["carriers"])
    result = {
        "prefixes": prefixes,
        "carriers": args.carriers,
        "exabgp_version": baseline["exabgp_version"],
        "agent_cpu_s": round(agent["agent_cpu_s"], 2),
        "agent_process_cpu_s": round(agent["agent_process_cpu_s"], 2),
        "bridge_cpu_s": round(agent["bridge_cpu_s"], 2),
        "exabgp_cpu_s": round(agent["exabgp_cpu_s"], 2),
        "cpu_ratio": round(agent["agent_cpu_s"] / agent["exabgp_cpu_s"], 3),
        "baseline_consumer_cpu_s": round(baseline["consumer_cpu_s"], 2),
        "baseline_exabgp_cpu_s": round(baseline["exabgp_cpu_s"], 2),
        "baseline_cpu_ratio": round(baseline["consumer_cpu_s"] / baseline["exabgp_cpu_s"], 3),
        "agent_vs_baseline_consumer": round(agent["agent_cpu_s"] / baseline["consumer_cpu_s"], 2),
        "load_wall_s": round(agent["wall_s"], 1),
        "baseline_load_wall_s": round(baseline["wall_s"], 1),
        "routes_held": agent["routes_held"],
        "attribute_sets": agent["attribute_sets"],
        "rib_bytes_per_route": round(agent["rib_bytes_per_route"], 1),
        "lpm_lookups_per_s": round(agent["lpm_lookups_per_s"]),
        "lpm_hit_ratio": round(agent["lpm_hit_ratio"], 3),
        "lookup_calls_per_s": round(agent["lookup_calls_per_s"]),
        "bad_lines": agent["bad_lines"],
        "rov": bool(args.vrps),
    }
    rov = agent["rov"]
    if args.vrps:
        vrps_n = rov["vrps"]
        result.update({
            "vrps": vrps_n,
            "vrp_load_s": round(rov["vrp_load_s"], 2),
            "vrp_bytes_per_vrp": round(rov["vrp_rss_bytes"] / vrps_n, 1),
            "vrp_index_bytes_per_vrp": round(rov["vrp_index_bytes"] / vrps_n, 1),
            "revalidate_s": round(rov["revalidate_s"], 3),
            "revalidate_direct_s": round(rov["revalidate_direct_s"], 3),
            "vrp_change_applied_s": round(rov["vrp_change_applied_s"], 2),
            "revalidated_routes": rov["full_revalidated_routes"],
            "small_change_revalidate_s": round(rov["small_revalidate_s"], 3),
            "small_change_revalidated_routes": rov["small_revalidated_routes"],
            "small_change_applied_s": round(rov["small_change_applied_s"], 2),
            "rpki": rov["rpki_before_change"],
            "rpki_after_change": rov["rpki_after_change"],
        })
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
