"""python -m tests.lab up|down|status — the lab from the command line (see README.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.lab.lab import Lab, LabSpec, down_state, gc_labs, parse_carriers
from tests.lab.netns import netns_list, netns_works

DEFAULT_STATE = Path("/run/egress-agent-lab/state.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab",
                                     description="the three-carrier lab in namespaces")
    parser.add_argument("command", choices=["up", "down", "status", "gc"],
                        help="gc: take down labs whose test run died without cleaning up")
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE,
                        help=f"state file (default {DEFAULT_STATE})")
    parser.add_argument("--routes", choices=["synthetic", "mrt"], default="synthetic")
    parser.add_argument("--n-routes", type=int, default=1000)
    parser.add_argument("--carriers", help="name:asn[:delay_ms[:link_mbps[:jitter_ms"
                        "[:loss_pct]]]],... (default telecom:4134:10:100,unicom:4837:25:100,"
                        "mobile:9808:40:50)")
    parser.add_argument("--no-servers", action="store_true",
                        help="no InfluxDB / VictoriaMetrics in the agent namespace")
    parser.add_argument("--prefix", help="name prefix (default: el<pid><random>)")
    parser.add_argument("--json", action="store_true", help="status as JSON")
    args = parser.parse_args(argv)

    if args.command == "up":
        ok, reason = netns_works()
        if not ok:
            print(f"lab: {reason}", file=sys.stderr)
            return 2
        if args.state.exists():
            state = json.loads(args.state.read_text())
            alive = set(state.get("namespaces", [])) & set(netns_list())
            if alive:
                print(f"lab: a lab is already up ({args.state}: {sorted(alive)}); "
                      "run `down` first or pass another --state", file=sys.stderr)
                return 1
        spec = LabSpec(routes=args.routes, n_routes=args.n_routes, servers=not args.no_servers)
        if args.carriers:
            spec.carriers = parse_carriers(args.carriers)
        lab = Lab(spec, prefix=args.prefix, state_file=args.state,
                  workdir=args.state.parent / (args.prefix or "lab"))
        try:
            lab.up(owned=False)
            lab.wait_carrier_mesh()
        except Exception as exc:
            print(f"lab: up failed: {exc}", file=sys.stderr)
            return 1
        print(lab.describe())
        print(f"agent namespace: ip netns exec {lab.agent_ns} <command>")
        return 0
    if args.command == "gc":
        for line in gc_labs():
            print(f"removed {line}")
        return 0
    if args.command == "down":
        if not args.state.exists():
            print(f"lab: no state file {args.state}: nothing to do")
            return 0
        down_state(args.state)
        return 0
    # status
    if not args.state.exists():
        print(f"lab: down (no state file {args.state})")
        return 3
    state = json.loads(args.state.read_text())
    existing = set(netns_list())
    alive_ns = [ns for ns in state.get("namespaces", []) if ns in existing]
    alive_pids = {k: pid for k, (pid, _start) in state.get("pids", {}).items()
                  if Path(f"/proc/{pid}").exists()}
    if args.json:
        print(json.dumps({**state, "alive_namespaces": alive_ns, "alive_pids": alive_pids},
                         indent=2))
    else:
        print(f"lab {state.get('prefix')}: {'up' if alive_ns else 'down'}")
        print(f"  namespaces: {', '.join(alive_ns) or '-'}")
        print(f"  processes: {', '.join(f'{k}={v}' for k, v in alive_pids.items()) or '-'}")
        for c in state.get("carriers", []):
            print(f"  {c['name']:<8} AS{c['asn']:<6} ns {c['ns']} uplink {c['uplink']} "
                  f"src {c['source']} gw {c['gateway']} table {c['table']} "
                  f"delay {c['delay_ms']} ms")
    return 0 if alive_ns else 3


if __name__ == "__main__":
    sys.exit(main())
