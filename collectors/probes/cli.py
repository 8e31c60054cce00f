"""`egress-agent probe` and `egress-agent traceroute` (docs/cli.md): on demand, no daemon needed.

Registered as `egress-agent` subcommands in collectors/__init__.py (COMMANDS), so the core
never imports this package by its name.
Carriers: with `-c FILE` (or `--carrier NAME`, which reads the default config) probes go
through the config's carriers, each on sockets bound to its uplink and source; with
neither, through the default route as one carrier named "default".
Exit codes (agent/exitcodes.py): 0 when at least one reply came back (probe) or one carrier
reached the target (traceroute), 1 when none did or probing itself failed, 2 for bad
arguments or config.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from agent.config import AgentConfig, Config, ConfigError, load_config
from agent.exitcodes import EXIT_FAILURE, EXIT_OK, UsageError
from agent.tables import table
from collectors.probes.config import QualityConfig, TracerouteConfig
from collectors.probes.engine import ProbeEngine
from collectors.probes.methods import parse_method
from collectors.probes.quality import Quality, assess
from collectors.probes.resolve import ResolveError, resolve
from collectors.probes.rounds import ProbeResult
from collectors.probes.sockets import DEFAULT_BINDING, Binding
from collectors.probes.traceroute import TraceResult, traceroute

MAX_COUNT = 10_000
MAX_INTERVAL_MS = 60_000
MAX_TIMEOUT_MS = 60_000
MAX_ROUND_S = 600.0
JSON_KEYS = (
    "sent", "received", "loss_pct", "rtt_min_ms", "rtt_avg_ms", "rtt_median_ms",
    "rtt_p95_ms", "rtt_max_ms", "jitter_ms", "stddev_ms",
)


# ---------------------------------------------------------------- arguments


def _bounded_int(name: str, low: int, high: int) -> Any:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name} must be {low}-{high}, got {value}")
        return value

    return convert


def _method(text: str) -> str:
    try:
        parse_method(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_commands(subparsers: Any) -> None:
    """Add `probe` and `traceroute` to the agent's argparse subparsers."""
    p = subparsers.add_parser("probe", help="probe targets through each carrier now")
    p.add_argument("targets", nargs="+", metavar="TARGET", help="address or host name")
    p.add_argument("--carrier", action="append", default=[], metavar="NAME",
                   help="only this carrier (repeatable; default: every carrier)")
    p.add_argument("--method", default="icmp", type=_method, metavar="M",
                   help="icmp (default), tcp:PORT, dns[:QNAME], http[:PATH]")
    p.add_argument("--count", type=_bounded_int("--count", 1, MAX_COUNT), default=10,
                   metavar="N", help=f"probes per carrier and target (1-{MAX_COUNT}, default 10)")
    p.add_argument("--interval", type=_bounded_int("--interval", 1, MAX_INTERVAL_MS),
                   default=100, metavar="MS", help="gap between probes in ms (default 100)")
    p.add_argument("--timeout", type=_bounded_int("--timeout", 1, MAX_TIMEOUT_MS),
                   default=1000, metavar="MS", help="per probe, ms (default 1000)")
    p.add_argument("--json", action="store_true", help="one JSON object: {\"results\": [...]}")
    p.add_argument("-c", "--config", help="carriers and [quality] from this config")
    p.set_defaults(func=cmd_probe)

    t = subparsers.add_parser("traceroute", help="path to a target through each carrier")
    t.add_argument("target", metavar="TARGET", help="address or host name")
    t.add_argument("--carrier", action="append", default=[], metavar="NAME",
                   help="only this carrier (repeatable; default: every carrier)")
    t.add_argument("--method", choices=("icmp", "udp"), default=None,
                   help="probe kind (default: [traceroute].method, else icmp)")
    t.add_argument("--max-hops", type=_bounded_int("--max-hops", 1, 64), default=None,
                   metavar="N", help="default: [traceroute].max_hops, else 30")
    t.add_argument("--timeout", type=_bounded_int("--timeout", 1, 10_000), default=None,
                   metavar="MS", help="per hop, ms (default: [traceroute].timeout, else 1000)")
    t.add_argument("--json", action="store_true", help="one JSON object")
    t.add_argument("-c", "--config", help="carriers from this config")
    t.set_defaults(func=cmd_traceroute)


def _config_and_bindings(args: argparse.Namespace) -> tuple[Config | None, list[Binding]]:
    config: Config | None = None
    if args.config or args.carrier:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            raise UsageError(str(exc).splitlines()[0]) from None
    if config is None or (not config.carriers and not args.carrier):
        if args.carrier and set(args.carrier) != {"default"}:
            raise UsageError(f"unknown carrier {args.carrier[0]!r} (the config has none)")
        return config, [DEFAULT_BINDING]
    if not args.carrier:
        return config, [Binding.from_carrier(c) for c in config.carriers]
    bindings = []
    for name in dict.fromkeys(args.carrier):
        carrier = config.carrier(name)
        if carrier is None:
            if name == "default":
                bindings.append(DEFAULT_BINDING)
                continue
            known = ", ".join(c.name for c in config.carriers)
            raise UsageError(f"unknown carrier {name!r} (known: {known})")
        bindings.append(Binding.from_carrier(carrier))
    return config, bindings


def _resolve_targets(targets: Sequence[str]) -> dict[str, str]:
    """Target → address (resolve.py, the engine's resolver); one that is neither an
    address nor resolvable is a usage error."""

    async def resolve_all() -> dict[str, str]:
        return {target: await resolve(target) for target in targets}

    try:
        return asyncio.run(resolve_all())
    except ResolveError as exc:
        raise UsageError(str(exc)) from None


# ---------------------------------------------------------------- probe


def result_json(result: ProbeResult) -> dict[str, Any]:
    """One entry of `probe --json`, keys in the documented order (docs/cli.md)."""
    stats = result.stats.as_dict()
    entry: dict[str, Any] = {
        "target": result.target,
        "carrier": result.carrier,
        "method": result.method,
    }
    for key in JSON_KEYS:
        value = stats[key]
        entry[key] = round(value, 3) if isinstance(value, float) else value
    entry["rtts_ms"] = [None if r is None else round(r, 3) for r in result.round.rtts_ms]
    return entry


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


_ROWS = (
    ("sent", "sent"), ("received", "received"), ("loss %", "loss_pct"),
    ("rtt min ms", "rtt_min_ms"), ("rtt avg ms", "rtt_avg_ms"),
    ("rtt median ms", "rtt_median_ms"), ("rtt p95 ms", "rtt_p95_ms"),
    ("rtt max ms", "rtt_max_ms"), ("jitter ms", "jitter_ms"), ("stddev ms", "stddev_ms"),
)


def render_table(target: str, address: str, method: str, results: list[ProbeResult],
                 qualities: list[Quality]) -> str:
    """Carriers side by side; the best carrier's column is marked with `*`."""
    by_carrier = {q.carrier: q for q in qualities}
    headers = [""] + [r.carrier + (" *" if by_carrier[r.carrier].best else "") for r in results]
    rows: list[list[str]] = []
    for label, key in _ROWS:
        if key == "loss_pct":
            rows.append([label] + ["-" if r.stats.loss_pct is None else f"{r.stats.loss_pct:.1f}"
                                   for r in results])
            continue
        rows.append([label] + [_fmt(r.stats.as_dict()[key]) for r in results])
    rows.append(["status"] + [by_carrier[r.carrier].status for r in results])
    rows.append(["score"] + [f"{by_carrier[r.carrier].score:.1f}" for r in results])
    shown = target if target == address else f"{target} ({address})"
    lines = [f"{shown}  {method}"]
    lines.extend(table(rows, headers, align=["left"] + ["right"] * len(results)))
    if any(q.best for q in qualities):
        lines.append("* best carrier for this target")
    return "\n".join(lines)


async def run_probes(bindings: list[Binding], targets: dict[str, str], method: str,
                     count: int, interval_s: float, timeout_s: float) -> list[ProbeResult]:
    engine = ProbeEngine()
    try:
        jobs = [
            engine.run_round(b, target, method, count, interval_s, timeout_s, address)
            for target, address in targets.items()
            for b in bindings
        ]
        return list(await asyncio.gather(*jobs))
    finally:
        engine.close()


def cmd_probe(args: argparse.Namespace) -> int:
    """egress-agent probe TARGET... (docs/cli.md)."""
    if args.count * args.interval / 1000.0 > MAX_ROUND_S:
        raise UsageError(f"--count x --interval must stay within {MAX_ROUND_S:g} s")
    config, bindings = _config_and_bindings(args)
    targets = _resolve_targets(args.targets)
    results = asyncio.run(run_probes(bindings, targets, args.method, args.count,
                                     args.interval / 1000.0, args.timeout / 1000.0))
    for r in results:
        if r.round.error:
            print(f"warning: {r.carrier} {r.method} {r.target}: {r.round.error}", file=sys.stderr)
    thresholds = config.quality if config else QualityConfig()
    if args.json:
        print(json.dumps({"results": [result_json(r) for r in results]}))
    else:
        blocks = []
        for target, address in targets.items():
            mine = [r for r in results if r.target == target]
            qualities = assess(target, {r.carrier: r.stats for r in mine}, thresholds)
            blocks.append(render_table(target, address, args.method, mine, qualities))
        print("\n\n".join(blocks))
    return EXIT_OK if any(r.stats.received for r in results) else EXIT_FAILURE


# ---------------------------------------------------------------- traceroute


def render_traces(results: list[TraceResult]) -> str:
    """Hops per TTL in rows, carriers side by side."""
    if not results:
        return ""
    depth = max((len(r.hops) for r in results), default=0)
    columns = []
    for r in results:
        cells = []
        for ttl in range(1, depth + 1):
            hop = r.hops[ttl - 1] if ttl <= len(r.hops) else None
            if hop is None:
                cells.append("")
            elif hop.address is None:
                cells.append("*")
            else:
                text = f"{hop.address} {_fmt(hop.rtt_ms)} ms"
                if r.annotated:
                    text += f" AS{hop.origin_as}" if hop.origin_as is not None else " AS?"
                cells.append(text)
        cells.append("reached" if r.reached else f"not reached{': ' + r.error if r.error else ''}")
        columns.append(cells)
    first = results[0]
    shown = first.target if first.target == first.address else f"{first.target} ({first.address})"
    lines = [f"traceroute to {shown} ({first.method})"]
    labels = [str(ttl) for ttl in range(1, depth + 1)] + [""]
    rows = [[label] + [col[row] for col in columns] for row, label in enumerate(labels)]
    lines.extend(table(rows, ["ttl"] + [r.carrier for r in results]))
    if any(r.annotated for r in results):
        for r in results:
            lines.append(f"{r.carrier}: AS path {r.as_path or '-'}")
    return "\n".join(lines)


async def run_traces(bindings: list[Binding], target: str, address: str, cfg: TracerouteConfig,
                     socket_path: Any) -> list[TraceResult]:
    from collectors.probes.asn import control_socket_lookup

    jobs = [
        traceroute(b, target, cfg.method, cfg.max_hops, cfg.timeout_s, address=address,
                   lookup_as=control_socket_lookup(socket_path, b.carrier))
        for b in bindings
    ]
    return list(await asyncio.gather(*jobs))


def cmd_traceroute(args: argparse.Namespace) -> int:
    """egress-agent traceroute TARGET (docs/cli.md)."""
    config, bindings = _config_and_bindings(args)
    address = _resolve_targets([args.target])[args.target]
    base = config.traceroute if config else TracerouteConfig()
    cfg = TracerouteConfig(
        interval_s=base.interval_s,
        method=args.method or base.method,
        max_hops=args.max_hops or base.max_hops,
        timeout_s=args.timeout / 1000.0 if args.timeout else base.timeout_s,
    )
    socket_path = (config.agent if config else AgentConfig(hostname="-")).control_socket
    results = asyncio.run(run_traces(bindings, args.target, address, cfg, socket_path))
    for r in results:
        if r.error:
            print(f"warning: {r.carrier} {r.target}: {r.error}", file=sys.stderr)
    if args.json:
        print(json.dumps({"results": [r.as_dict() for r in results]}))
    else:
        print(render_traces(results))
    return EXIT_OK if any(r.reached for r in results) else EXIT_FAILURE
