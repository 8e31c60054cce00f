"""The `egress-agent` command line (docs/cli.md): parse, call, print. Exit codes from
agent/exitcodes.py (0 ok, 1 runtime failure, 2 usage or config error); errors are one line
on stderr unless --debug.

Collector packages add their own subcommands (`probe`, `traceroute`) the way they add
collectors: they register "module:function" names with agent/registry.py (COMMANDS), and
the core imports a function by its name, never a collector module by its own. They are
looked up only when the command is not one of the core's, so `run` (the daemon) never
imports a collector's CLI.
"""

from __future__ import annotations

# ruff: noqa: E402  (the imports below come after lazyssl.install(), which must run first)
from agent import lazyssl

lazyssl.install()  # before anything imports asyncio: see agent/lazyssl.py

import argparse
import asyncio
import importlib
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.config import Config, ConfigError, load_config, parse_duration
from agent.exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError
from agent.tables import table

log = logging.getLogger("egress-agent")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse prints usage and exits 2; keep one line
        raise UsageError(f"{self.prog}: {message}")


def _setup_logging(level: str, fmt: str) -> None:
    try:
        logsetup = importlib.import_module("agent.logsetup")
        logsetup.configure_logging(level, fmt)
    except ImportError:
        logging.basicConfig(
            level=getattr(logging, level.upper(), logging.INFO),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )


def _load(path: str | None) -> Config:
    return load_config(path)


# ---------------------------------------------------------------- commands


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    print(f"{config.path}: ok ({len(config.carriers)} carriers, {len(config.probes)} probes)")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be greater than 0")
    _setup_logging("debug" if args.debug else config.agent.log_level, config.agent.log_format)
    from agent.daemon import Agent

    agent = Agent(config)
    asyncio.run(agent.run(args.duration))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from agent.control import call

    socket_path = _socket_path(args)
    result = call(socket_path, "status", timeout_s=5.0)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return EXIT_OK
    print(render_status(result))
    return EXIT_OK


def cmd_alerts(args: argparse.Namespace) -> int:
    from agent.control import call

    result = call(_socket_path(args), "alerts", timeout_s=5.0)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return EXIT_OK
    print(render_alerts(result.get("alerts", [])))
    return EXIT_OK


def render_alerts(alerts: list[dict[str, Any]]) -> str:
    """Two lines per alert: state, severity, name, labels and since (aligned in columns
    across the alerts), then its summary."""
    if not alerts:
        return "no active alerts"
    rows = []
    for alert in alerts:
        labels = alert.get("labels", {})
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(
            alert.get("fired_at") or alert.get("active_at") or 0))
        where = " ".join(f"{k}={v}" for k, v in sorted(labels.items())
                         if k not in ("alertname", "severity", "host"))
        rows.append([alert.get("state", ""), labels.get("severity", ""),
                     labels.get("alertname", ""), where, f"since {since}"])
    lines = []
    for line, alert in zip(table(rows), alerts, strict=True):
        lines.append(line)
        lines.append(f"    {alert.get('annotations', {}).get('summary', '')}")
    return "\n".join(lines)


def _socket_path(args: argparse.Namespace) -> Path:
    if args.socket:
        return Path(args.socket)
    try:
        return load_config(args.config).agent.control_socket
    except ConfigError:
        if args.config:
            raise
        return Path("/run/egress-agent/control.sock")


def cmd_reload(args: argparse.Namespace) -> int:
    from agent.control import call
    from agent.logsetup import stderr_is_journal

    # The socket from the config when it is valid; the default otherwise: an invalid
    # config is exactly what the daemon must be asked to refuse.
    socket_path = Path(args.socket) if args.socket else _running_socket(args.config)
    result = call(socket_path, "reload", timeout_s=args.timeout)
    if result.get("applied"):
        print(f"reloaded {result.get('config')}")
        return EXIT_OK
    # Under systemd (ExecReload) the daemon has logged each problem already.
    if not stderr_is_journal(sys.stderr):
        for line in result.get("problems") or ["reload refused"]:
            print(line, file=sys.stderr)
    return EXIT_USAGE


def _running_socket(config_path: str | None) -> Path:
    try:
        return load_config(config_path).agent.control_socket
    except ConfigError:
        return Path("/run/egress-agent/control.sock")


def render_status(status: dict[str, Any]) -> str:
    lines = [
        f"egress-agent on {status.get('host')} ({status.get('config')}), "
        f"queue {status.get('queue_points')} points, spool {status['spool']['bytes']} bytes",
        "collectors:",
    ]
    rows = []
    for c in status.get("collectors", []):
        last = time.strftime("%H:%M:%S", time.localtime(c["last_run_ns"] / 1e9)) \
            if c.get("last_run_ns") else "-"
        rows.append([c["name"], c["kind"], f"last {last}", f"runs {c['runs']}",
                     f"errors {c['errors']}", f"overruns {c['overruns']}",
                     f"restarts {c['restarts']}",
                     f"({c['last_error']})" if c.get("last_error") else ""])
    lines.extend(table(rows, indent="  "))
    lines.append("outputs:")
    rows = []
    for name, o in status.get("outputs", {}).items():
        rows.append([name, f"written {o['points_written']}", f"lag {o['lag_points']} points",
                     f"write_errors {o['write_errors']}", f"retries {o['retries']}",
                     f"last error: {o['last_error']}" if o.get("last_error") else ""])
    lines.extend(table(rows, indent="  "))
    alerts = status.get("alerts")
    if isinstance(alerts, dict):
        lines.append(f"alerts: {alerts.get('firing', 0)} firing, {alerts.get('pending', 0)} "
                     "pending")
        lines.extend(f"  {line}" for line in alerts.get("active", []))
    ris = status.get("ris_live")
    if isinstance(ris, dict):
        lines.extend(render_ris_live(ris))
    known = {"host", "config", "started_ns", "reloads", "collectors", "queue_points", "spool",
             "encoding", "alerts",
             "outputs", "totals", "ris_live"}
    for section, content in status.items():
        if section == "rpki" and isinstance(content, dict) and "sources" in content:
            lines.extend(render_rpki_status(content))
        elif section not in known:
            lines.append(f"{section}:")
            lines.append("  " + json.dumps(content, default=str, indent=None)[:2000])
    return "\n".join(lines)


def render_ris_live(ris: dict[str, Any]) -> list[str]:
    """`ris_live` status section ([bgp.ris_live]): the feed, then per prefix the vantage
    points seeing it with our origin, per carrier, through others, with foreign origins."""
    feed = ris.get("feed", {})
    age = feed.get("last_message_age_s")
    state = "connected" if feed.get("connected") else "NOT CONNECTED"
    if feed.get("silent"):
        state += ", SILENT"
    if not feed.get("warmed_up") and feed.get("warmup_left_s") is not None:
        state += f", warming up ({feed['warmup_left_s']:.0f} s left)"
    lines = [
        f"ris_live: {state}, {ris.get('vantage_points', 0)} vantage points, "
        f"{feed.get('messages_per_min', 0):.0f} messages/min, last message "
        + (f"{age:.1f} s ago" if isinstance(age, int | float) else "never")
        + f", reconnects {feed.get('reconnects', 0)}, "
        f"bad messages {ris.get('messages', {}).get('bad_messages', 0)}"
        + (f" ({feed['last_error']})" if feed.get("last_error") else ""),
    ]
    for p in ris.get("prefixes", []):
        text = f"  {p.get('prefix')}: any {p.get('any', 0)}"
        if p.get("own"):
            carriers = "  ".join(f"{name} {n}" for name, n in p.get("carriers", {}).items())
            text += (f"  |  {carriers}  other {p.get('other', 0)}  |  foreign origin "
                     f"{p.get('foreign_origin', 0)}  more-specific {p.get('more_specific', 0)}")
        else:
            text += "  (watched)"
        if p.get("lost"):
            text += f"  LOST via {', '.join(p['lost'])}"
        lines.append(text)
    for h in ris.get("hijacks", []):
        lines.append(f"  HIJACK {h.get('seen')} originated by AS{h.get('origin_as')}, seen by "
                     f"{h.get('peers')} vantage points")
    for u in ris.get("unexpected_upstreams", []):
        lines.append(f"  UNEXPECTED UPSTREAM AS{u.get('upstream_as')} for {u.get('prefix')}, "
                     f"seen by {u.get('peers')} vantage points")
    return lines


def render_rpki_status(rpki: dict[str, Any]) -> list[str]:
    """The `rpki` status section ([bgp.rpki]): sources, the set in force, counts."""
    lines = [f"rpki: {rpki.get('vrps', 0)} VRPs in force (v4 {rpki.get('vrps_v4', 0)}, "
             f"v6 {rpki.get('vrps_v6', 0)}) from {rpki.get('source_in_force') or 'none yet'}"
             + ("  STALE" if rpki.get("stale") else "")
             + f", re-validated {rpki.get('revalidations', 0)} times "
             f"(last {rpki.get('last_revalidation_ms', 0)} ms)"]
    for source in rpki.get("sources", []):
        updated = source.get("last_update_s")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(updated)) if updated else "never"
        lines.append(
            f"  {'*' if source.get('in_force') else ' '} {source.get('source')}: "
            f"{source.get('vrps', 0)} VRPs, serial {source.get('serial')}, last update {when}"
            + (f" ({source.get('age_s')} s ago)" if updated else "")
            + ("" if source.get("connected") else ", not connected")
            + (", stale" if source.get("stale") else "")
            + (f", RTR v{source['version']}" if "version" in source else "")
            + (f"; last error: {source['last_errors'][-1]}" if source.get("last_errors")
               else ""))
    lines.extend(table([[carrier, f"valid {c['valid']}", f"invalid {c['invalid']}",
                         f"not found {c['not_found']}"]
                        for carrier, c in rpki.get("carriers", {}).items()], indent="  "))
    for prefix, own in rpki.get("own", {}).items():
        expires = own.get("roa_expires")
        lines.append(f"  own {prefix}: {own['state']}"
                     + (f", ROA expires {time.strftime('%Y-%m-%d %H:%M', time.gmtime(expires))}"
                        " UTC" if expires else ""))
    return lines


def cmd_report(args: argparse.Namespace) -> int:
    from agent.report import render_text, summarize
    from agent.spool import Spool

    config = _load(args.config)
    try:
        since_s = parse_duration(args.since)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
    spool = Spool(config.agent.data_dir, read_only=True)
    since_ns = time.time_ns() - int(since_s * 1e9)
    summary = summarize(spool.iter_points(since_ns))
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(render_text(summary, args.since))
    return EXIT_OK


# ---------------------------------------------------------------- parser


def build_parser(with_contributed: bool = True) -> argparse.ArgumentParser:
    parser, sub = _core_parser()
    if with_contributed:
        for add_commands in contributed_commands():
            add_commands(sub)
    return parser


def _core_parser() -> tuple[argparse.ArgumentParser, Any]:
    """The parser with the core's commands, and its subparsers (for contributed ones)."""
    parser = _Parser(prog="egress-agent", description="Monitoring agent for multi-homed hosts "
                     "(docs/cli.md).")
    parser.add_argument("--debug", action="store_true", help="tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", help="config file (default $EGRESS_AGENT_CONFIG "
                       "or /etc/egress-agent/agent.toml)")

    p = sub.add_parser("run", help="run the daemon")
    with_config(p)
    p.add_argument("--duration", type=float, help="stop cleanly after S seconds")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate the config")
    with_config(p)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("report", help="per-carrier summary from the embedded store")
    with_config(p)
    p.add_argument("--since", default="15m", help="period, e.g. 15m, 1h (default 15m)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("status", help="live state of the running daemon")
    with_config(p)
    p.add_argument("--socket", help="control socket (default from the config)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("reload", help="re-read the config in the running daemon and wait "
                       "for the outcome (exit 2 when refused)")
    with_config(p)
    p.add_argument("--socket", help="control socket (default from the config)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait for the daemon (default 60)")
    p.set_defaults(func=cmd_reload)

    p = sub.add_parser("alerts", help="active alerts of the running daemon")
    with_config(p)
    p.add_argument("--socket", help="control socket (default from the config)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_alerts)

    return parser, sub


def contributed_commands() -> list[Callable[[Any], None]]:
    """The subcommand adders the plugins registered (agent/registry.py), in name order."""
    from agent import registry

    registry.load_plugins()
    adders = []
    for _name, target in sorted(registry.COMMANDS.items()):
        module_name, _, function = target.partition(":")
        adders.append(getattr(importlib.import_module(module_name), function))
    return adders


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv (its first word that is not an option), if any."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _print_error(text: str) -> None:
    from agent.logsetup import error_lines

    print(error_lines(text, sys.stderr), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    from agent.control import ControlError

    words = list(argv if argv is not None else sys.argv[1:])
    debug = "--debug" in words
    try:
        parser, sub = _core_parser()
        if _command_of(words) not in sub.choices:  # not the core's: look the others up
            for add_commands in contributed_commands():
                add_commands(sub)
        args = parser.parse_args(words)
        code: int = args.func(args)
        return code
    except UsageError as exc:
        _print_error(f"error: {exc}")
        return EXIT_USAGE
    except ConfigError as exc:
        _print_error(str(exc))
        return EXIT_USAGE
    except ControlError as exc:
        _print_error(f"error: {exc}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except Exception as exc:
        if debug:
            raise
        _print_error(f"error: {type(exc).__name__}: {exc}")
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
