"""CPU per probe, the agent's own cost of one TCP and one ICMP probe, on loopback.

    .venv/bin/python bench/probe_cpu.py [--trials 8]

Rounds as the probes collector runs them (6 concurrent rounds of 10 probes, 0.5 ms apart)
through ProbeEngine against 127.0.0.1: a listening socket of this process for TCP (its
accept and close are counted too), the kernel's echo reply for ICMP. CPU is getrusage of
this process (user + system) per probe; trials alternate, and the median is printed.
For TCP the same rounds also run as a plain asyncio implementation would (a task per probe,
`asyncio.timeout` and `loop.sock_connect`) in place of collectors/probes/tcpround.py, as the
baseline of the same run: tcp_cpu_ratio_vs_sock_connect = ours / that (lower is better).
Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collectors.probes import connecting
from collectors.probes.engine import ProbeEngine
from collectors.probes.icmp import IcmpSockets
from collectors.probes.methods import OneProbe, paced_round
from collectors.probes.probers import PROBERS, RoundSpec, probe_tcp
from collectors.probes.rounds import RoundResult
from collectors.probes.sockets import Binding, family_of, open_bound

ROUNDS_PER_TRIAL = 10
CONCURRENT_ROUNDS = 6
COUNT = 10


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sock_connect_probe(binding: Binding, address: str, port: int) -> OneProbe:
    """One TCP probe as plain asyncio code would run it: the baseline."""
    async def one(timeout_s: float) -> float:
        sock = open_bound(binding, family_of(address), socket.SOCK_STREAM)
        start = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.get_running_loop().sock_connect(sock, (address, port))
            return connecting.handshake_ms(sock, start)
        finally:
            connecting.reset_close(sock)

    return one


async def probe_tcp_sock_connect(spec: RoundSpec, _icmp: IcmpSockets) -> RoundResult:
    assert spec.method.port is not None
    one = sock_connect_probe(spec.binding, spec.address, spec.method.port)
    return await paced_round(spec.count, spec.interval_s, spec.timeout_s, one)


async def trial(engine: ProbeEngine, method: str) -> float:
    binding = Binding("bench")
    start = cpu_s()
    for _ in range(ROUNDS_PER_TRIAL):
        results = await asyncio.gather(*(
            engine.run_round(binding, "127.0.0.1", method, COUNT, 0.0005, 1.0)
            for _ in range(CONCURRENT_ROUNDS)))
        for result in results:
            if result.stats.received != COUNT:
                raise SystemExit(f"{method}: {result.stats.received}/{COUNT} answered "
                                 f"({result.round.error})")
    return (cpu_s() - start) / (ROUNDS_PER_TRIAL * CONCURRENT_ROUNDS * COUNT) * 1e6


async def main(trials: int) -> dict[str, float]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    listener.setblocking(False)
    port = listener.getsockname()[1]

    def accept_all() -> None:
        try:
            while True:
                conn, _ = listener.accept()
                conn.close()
        except BlockingIOError:
            pass

    asyncio.get_running_loop().add_reader(listener, accept_all)
    engine = ProbeEngine()
    figures: dict[str, list[float]] = {"tcp": [], "tcp_sock_connect": [], "icmp": []}
    for _ in range(trials):
        for name, prober in (("tcp", probe_tcp), ("tcp_sock_connect", probe_tcp_sock_connect)):
            PROBERS["tcp"] = prober
            figures[name].append(await trial(engine, f"tcp:{port}"))
        PROBERS["tcp"] = probe_tcp
        figures["icmp"].append(await trial(engine, "icmp"))
    engine.close()
    medians = {name: statistics.median(values) for name, values in figures.items()}
    for name, values in figures.items():
        print(f"{name:17s} median {medians[name]:6.1f} us/probe, "
              f"min {min(values):6.1f} ({len(values)} trials)")
    return {
        "tcp_cpu_us_per_probe": round(medians["tcp"], 1),
        "tcp_sock_connect_cpu_us_per_probe": round(medians["tcp_sock_connect"], 1),
        "tcp_cpu_ratio_vs_sock_connect": round(medians["tcp"] / medians["tcp_sock_connect"], 3),
        "icmp_cpu_us_per_probe": round(medians["icmp"], 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.trials))))
