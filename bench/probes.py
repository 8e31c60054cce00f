"""Benchmark: sustained ICMP probing through a lab carrier vs scapy sr() and fping.

    .venv/bin/python bench/probes.py [--seconds 10] [--carrier telecom] [--target kernel|delayed]

Brings up its own lab (tests/lab, about 0.3 s), probes from the agent namespace on a raw
socket bound to one carrier (SO_BINDTODEVICE + source), and tears the lab down at the end.

Target: the lab's delay line (user-space, in the transit namespace) cannot answer 10k
probes/s, so by default the sustained run probes the carrier's router (hop 1,
`100.64.<i>.1`), answered by its kernel's own echo reply through the same bound uplink
(`--target kernel`). `--target delayed` uses the lab target behind the delay line instead.

Measured in the same run, on the same target and uplink:
1. rate search: 1 s trials at falling paced rates (80k/s down) until one gets >= 99.5 %
   replies, then the sustained run (--seconds, default 10) at that pace; if it gets < 99 %,
   the next lower pace is tried. probes_per_s = probes sent / wall time of the run (below
   the pace when the engine is CPU-bound: `paced_rate` is what was asked), reply_pct =
   replies counted (kernel timestamps, id/seq/token matched, none late, none twice) / sent.
2. scapy sr(): 1,000 echo requests in one sr() call; answered per second.
3. fping -i 1 -p 1 -C 2000 (bound with -I/-S as ours): probes per second of wall time.
4. RTT median difference: ours minus fping's, at the same 10 ms period, 300 probes each,
   on the kernel target (rtt_diff_vs_fping_ms) and on the delayed target behind the delay
   line (rtt_diff_vs_fping_delayed_ms).
Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collectors.probes.engine import ProbeEngine  # noqa: E402
from collectors.probes.rounds import RoundResult  # noqa: E402
from collectors.probes.sockets import Binding  # noqa: E402

RATES = (80_000, 60_000, 50_000, 40_000, 30_000, 20_000, 15_000, 12_000, 10_000, 7_500,
         5_000, 2_500, 1_000)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def icmp_run(binding: Binding, target: str, count: int, interval_s: float,
                   timeout_s: float = 1.0) -> tuple[RoundResult, float]:
    engine = ProbeEngine()
    try:
        started = time.perf_counter()
        result = await engine.run_round(binding, target, "icmp", count, interval_s, timeout_s)
        return result.round, time.perf_counter() - started
    finally:
        engine.close()


def reply_pct(result: RoundResult) -> float:
    received = sum(r is not None for r in result.rtts_ms)
    return 100.0 * received / len(result.rtts_ms)


def ours(binding: Binding, target: str, seconds: float) -> dict[str, Any]:
    trials: list[dict[str, Any]] = []
    for index, rate in enumerate(RATES):
        trial, elapsed = asyncio.run(icmp_run(binding, target, rate, 1.0 / rate))
        pct = reply_pct(trial)
        trials.append({"rate": rate, "reply_pct": round(pct, 3),
                       "probes_per_s": round(rate / elapsed)})
        log(f"trial {rate}/s: {pct:.2f} % replies, {rate / elapsed:.0f} probes/s")
        if pct < 99.5:
            continue
        for sustained_rate in RATES[index:]:
            count = int(sustained_rate * seconds)
            run, elapsed = asyncio.run(icmp_run(binding, target, count, 1.0 / sustained_rate))
            pct = reply_pct(run)
            log(f"sustained {sustained_rate}/s for {seconds:g} s: {pct:.3f} % replies, "
                f"{count / elapsed:.0f} probes/s, late {run.late}, duplicates {run.duplicates}")
            if pct >= 99.0:
                return {"rate": sustained_rate, "probes_per_s": count / elapsed,
                        "reply_pct": pct, "late": run.late, "duplicates": run.duplicates,
                        "send_errors": run.send_errors, "trials": trials}
        break
    return {"rate": 0, "probes_per_s": 0.0, "reply_pct": 0.0, "trials": trials}


def scapy_sr(target: str, iface: str, count: int = 1000) -> float:
    from scapy.config import conf
    from scapy.layers.inet import ICMP, IP
    from scapy.sendrecv import sr

    conf.verb = 0
    conf.route.resync()  # this thread sits in the agent namespace: re-read its routes
    packets = IP(dst=target) / ICMP(id=0x4242, seq=(1, count))
    started = time.perf_counter()
    answered, _unanswered = sr(packets, timeout=2, iface=iface, verbose=0)
    elapsed = time.perf_counter() - started
    log(f"scapy sr(): {len(answered)}/{count} answered in {elapsed:.2f} s")
    return len(answered) / elapsed


def fping(ns: str, binding: Binding, target: str, count: int, period_ms: int,
          interval_ms: int = 1) -> tuple[float, list[float]]:
    argv = ["ip", "netns", "exec", ns, "fping", "-C", str(count), "-p", str(period_ms),
            "-i", str(interval_ms), "-t", "500", "-q", "-I", str(binding.interface),
            "-S", str(binding.source4), target]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    elapsed = time.perf_counter() - started
    rtts: list[float] = []
    for line in proc.stderr.splitlines():
        if ":" in line and line.split(":")[0].strip() == target:
            rtts = [float(x) for x in line.split(":", 1)[1].split() if x != "-"]
    log(f"fping -p {period_ms} -i {interval_ms}: {len(rtts)}/{count} replies in {elapsed:.2f} s")
    return count / elapsed, rtts


def median_rtt(binding: Binding, target: str, count: int, interval_s: float) -> float:
    run, _ = asyncio.run(icmp_run(binding, target, count, interval_s))
    values = [r for r in run.rtts_ms if r is not None]
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--carrier", default="telecom")
    parser.add_argument("--target", choices=("kernel", "delayed"), default="kernel")
    args = parser.parse_args()

    from tests.lab.lab import Lab
    from tests.lab.netns import in_netns

    lab = Lab()
    lab.up()
    try:
        c = lab.carrier(args.carrier)
        binding = Binding(c.name, c.uplink, c.source, c.source6)
        target = c.gateway if args.target == "kernel" else lab.target
        kind = ("kernel echo reply of the carrier's router (hop 1, no delay line: the "
                "user-space delay line cannot answer 10k/s)" if args.target == "kernel"
                else "lab target behind the delay line")
        log(f"lab {lab.prefix}: probing {target} through {c.name} ({kind})")
        # warm the paths (neighbour resolution) before measuring
        in_netns(lab.agent_ns, lambda: asyncio.run(icmp_run(binding, target, 5, 0.01, 2.0)))
        in_netns(lab.agent_ns,
                 lambda: asyncio.run(icmp_run(binding, lab.target, 5, 0.01, 2.0)))

        mine = in_netns(lab.agent_ns, lambda: ours(binding, target, args.seconds))
        scapy_rate = in_netns(lab.agent_ns, lambda: scapy_sr(target, c.uplink))
        fping_rate, _ = fping(lab.agent_ns, binding, target, 2000, 1)

        our_median = in_netns(lab.agent_ns, lambda: median_rtt(binding, target, 300, 0.01))
        _, fping_rtts = fping(lab.agent_ns, binding, target, 300, 10, 10)
        delayed_ours = in_netns(lab.agent_ns,
                                lambda: median_rtt(binding, lab.target, 300, 0.01))
        _, fping_delayed = fping(lab.agent_ns, binding, lab.target, 300, 10, 10)
    finally:
        lab.down()

    fping_median = statistics.median(fping_rtts)
    fping_delayed_median = statistics.median(fping_delayed)
    figures = {
        "probes_per_s": round(mine["probes_per_s"], 1),
        "reply_pct": round(mine["reply_pct"], 3),
        "ratio_vs_scapy_sr": round(mine["probes_per_s"] / scapy_rate, 2),
        "ratio_vs_fping": round(mine["probes_per_s"] / fping_rate, 2),
        "rtt_diff_vs_fping_ms": round(our_median - fping_median, 4),
        "rtt_diff_vs_fping_delayed_ms": round(delayed_ours - fping_delayed_median, 4),
        "paced_rate": mine["rate"],
        "seconds": args.seconds,
        "late": mine.get("late"),
        "duplicates": mine.get("duplicates"),
        "scapy_sr_per_s": round(scapy_rate, 1),
        "fping_per_s": round(fping_rate, 1),
        "rtt_median_ms": round(our_median, 4),
        "fping_rtt_median_ms": round(fping_median, 4),
        "rtt_median_delayed_ms": round(delayed_ours, 4),
        "fping_rtt_median_delayed_ms": round(fping_delayed_median, 4),
        "delay_ms": c.delay_ms,
        "target": target,
        "target_kind": kind,
        "trials": mine["trials"],
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
