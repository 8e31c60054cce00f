"""The agent's life cycle: start, reload (SIGHUP), stop (SIGTERM/SIGINT), sd_notify.

Start order: spool (recovers torn records), outputs (catch up from their cursors),
collectors, control socket, then READY=1. Stop order is the reverse, and nothing queued is
lost: collectors stop, the queue goes to the spool, outputs get a few seconds to deliver,
and whatever they could not deliver stays in the spool for the next start.

A stop is bounded (STOP_TIMEOUT_S) whatever the collectors and outputs are doing: each
phase has a deadline, a request still in flight at the end is abandoned (its records stay
in the spool; a cursor only moves past what a server confirmed) and said so in one line.

Why one file of ~550 lines: `Agent` is the process's state (outputs and their workers, the
collector groups, the pipeline, the alert engine, the Prometheus exporter) and its three
phases, start, reload and stop, each touch all of it in an order that matters; split by
concern, every part would take the whole Agent again. What is not phase logic lives
elsewhere: config (agent/config/), groups (agent/registry.py), scheduling
(agent/scheduler.py), the emit path (agent/pipeline.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
from pathlib import Path
from typing import Any

from agent import gcsettle, registry
from agent.alerts.engine import AlertEngine, LagTracker
from agent.collector import Built, Collector, CollectorContext, ControlHandler, StatusProvider
from agent.config import (
    Config,
    ConfigError,
    load_config,
    secret_file_keys,
    secret_file_warnings,
)
from agent.control import ControlServer
from agent.outputs.base import Output, OutputWorker
from agent.pipeline import Pipeline
from agent.scheduler import Scheduler
from agent.sdnotify import Heartbeat, SystemdNotifier, watchdog_loop
from agent.spool import Spool

log = logging.getLogger(__name__)

# The stop's budget. STOP_TIMEOUT_S bounds stop() as a whole, so the process exits within
# about 5 s of SIGTERM (systemd's TimeoutStopSec is 20 s): collectors get STOP_COLLECTORS_S
# to end, outputs up to STOP_DRAIN_S to deliver what is pending (less when the budget is
# short), then a request still in flight gets STOP_SENDER_S before it is abandoned.
STOP_TIMEOUT_S = 4.0
STOP_COLLECTORS_S = 1.0
STOP_DRAIN_S = 2.0
STOP_SENDER_S = 1.0
STOP_TASKS_S = 0.5
EXPIRE_EVERY_S = 60.0
ALERT_TICK_S = 1.0  # pending alerts fire, time-based conditions re-evaluate
FLUSH_GAP_S = 1.0  # emits within a second share one spool append and output request
FLUSH_GATHER_S = 0.05  # the first emit after a quiet second waits for those of its tick
ALERT_SELF_STATS_S = 5.0  # the agent's own conditions (output lag, drops, overruns)


def build_outputs(config: Config) -> list[Output]:
    outputs: list[Output] = []
    if config.outputs.influxdb is not None:
        from agent.outputs.influxdb import InfluxDBOutput

        outputs.append(InfluxDBOutput(config.outputs.influxdb))
    if config.outputs.influxdb_v1 is not None:
        from agent.outputs.influxdb_v1 import InfluxDBv1Output

        outputs.append(InfluxDBv1Output(config.outputs.influxdb_v1))
    if config.outputs.alertmanager is not None:
        from agent.outputs.alerts import AlertmanagerOutput

        outputs.append(AlertmanagerOutput(config.outputs.alertmanager, config.agent.data_dir))
    if config.outputs.webhook is not None:
        from agent.outputs.alerts import WebhookOutput

        outputs.append(WebhookOutput(config.outputs.webhook))
    return outputs


def _unusable(config: Config, key: str, path: Path, exc: OSError) -> ConfigError:
    """A directory or socket the agent cannot use is a config error (exit 2): a restart
    would fail the same way, so systemd must not loop on it (RestartPreventExitStatus=2)."""
    reason = exc.strerror or type(exc).__name__
    return ConfigError(str(config.path), [(key, f"cannot use {path}: {reason}")])


class Agent:
    def __init__(self, config: Config, notifier: SystemdNotifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or SystemdNotifier(unset_environment=True)
        self.heartbeat = Heartbeat()
        try:
            self.spool = Spool(
                config.agent.data_dir,
                max_bytes=config.agent.spool_max_bytes,
                retention_s=config.agent.retention_s,
                fsync=config.agent.fsync,
                fsync_interval_s=config.agent.fsync_interval_s,
            )
        except OSError as exc:
            raise _unusable(config, "agent.data_dir", config.agent.data_dir, exc) from exc
        self.pipeline = Pipeline(self.spool, config.agent.hostname)
        self.scheduler = Scheduler(self.pipeline)
        self.workers: dict[str, tuple[OutputWorker, asyncio.Task[None]]] = {}
        # The running collector groups: the context each was lent and what its factory
        # built (collectors, control commands, status sections), kept across a reload.
        self.groups: dict[str, tuple[CollectorContext, Built]] = {}
        # The commands the control socket answers: the core's, then those of the groups.
        self.controls: dict[str, ControlHandler] = {
            "status": lambda _args: self.status(),
            "ping": lambda _args: "pong",
            "reload": self._control_reload,
            "alerts": lambda _args: self.alerts_list(),
        }
        self.status_providers: dict[str, StatusProvider] = {}
        self.control: ControlServer | None = None
        self.prometheus: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._settling: asyncio.Task[int] | None = None
        self._stop = asyncio.Event()
        self._reload_requested = asyncio.Event()
        self.started_ns = time.time_ns()
        self.reloads = 0
        # SIGHUP and the control socket's `reload` both reload; one at a time.
        self._reload_lock = asyncio.Lock()
        self.reload_problems: list[str] = []
        self.alerts = AlertEngine(
            config, self.pipeline.emit,
            state_path=config.agent.data_dir / "alerts" / "state.json",
            lookup=self._bgp_lookup,
        )
        self._spool_head = LagTracker()

    # ------------------------------------------------------------ wiring

    def _context(self, config: Config) -> CollectorContext:
        """What a collector group is lent when it is built (it keeps it for its life)."""
        return CollectorContext(
            config=config,
            emit=self.pipeline.emit,
            emit_urgent=functools.partial(self.pipeline.emit, urgent=True),
            data_dir=config.agent.data_dir,
            control_handlers=self.controls,
            core_stats=self.core_stats,
        )

    def _bgp_lookup(self, args: dict[str, Any]) -> Any:
        """For the alert engine: the BGP collector's `bgp.lookup`, when it runs."""
        handler = self.controls.get("bgp.lookup")
        if handler is None:
            raise LookupError("no BGP collector")
        return handler(args)

    def alerts_list(self) -> dict[str, Any]:
        return {"host": self.config.agent.hostname, "alerts": self.alerts.active()}

    def alert_self_stats(self) -> dict[str, Any]:
        """What the agent's own alert conditions judge (not in any point: output lag as
        time, collector overruns)."""
        now = time.time()
        self._spool_head.sample(now, self.spool.next_seq)
        outputs = {}
        for name, (worker, _) in self.workers.items():
            lag_s = self._spool_head.lag_s(now, self.spool.cursor(name))
            outputs[name] = {
                "lag_s": lag_s,
                "lag_points": self.spool.lag(name)[1] if lag_s else 0,
                "last_error": worker.stats.last_error if worker.last_attempt_failed else "",
            }
        stats = self.core_stats()
        return {
            "outputs": outputs,
            "points_dropped": stats["points_dropped"],
            "collectors": {c["name"]: c.get("overruns", 0) for c in self.scheduler.status()},
        }

    async def _alert_ticker(self) -> None:
        last_stats = 0.0
        while True:
            await asyncio.sleep(ALERT_TICK_S)
            stats = None
            if time.monotonic() - last_stats >= ALERT_SELF_STATS_S:
                last_stats = time.monotonic()
                try:
                    stats = self.alert_self_stats()
                except Exception:
                    log.exception("alerts: self stats failed")
            self.alerts.tick(stats)

    def core_stats(self) -> dict[str, Any]:
        outputs = {}
        for name, (worker, _) in self.workers.items():
            _, lag_points = self.spool.lag(name)
            outputs[name] = {
                "points_written": worker.stats.points_written,
                "write_errors": worker.stats.write_errors,
                "retries": worker.stats.retries,
                "lag_points": lag_points,
            }
        encoder_dropped = self.pipeline.points_unencodable
        return {
            "queue_points": self.pipeline.queue_points,
            "spool_bytes": self.spool.total_bytes,
            "points_written": sum(o["points_written"] for o in outputs.values()),
            "points_dropped": self.spool.stats.dropped_points
            + self.pipeline.stats.queue_dropped + encoder_dropped,
            "write_errors": sum(o["write_errors"] for o in outputs.values()),
            "outputs": outputs,
        }

    def status(self) -> dict[str, Any]:
        outputs = {}
        for name, (worker, _) in self.workers.items():
            lag_records, lag_points = self.spool.lag(name)
            outputs[name] = {
                "cursor": self.spool.cursor(name),
                "lag_records": lag_records,
                "lag_points": lag_points,
                **worker.stats.__dict__,
            }
        sections: dict[str, Any] = {}
        for name, provider in self.status_providers.items():
            try:
                sections[name] = provider()
            except Exception as exc:
                sections[name] = {"error": f"{type(exc).__name__}: {exc}"}
        stats = self.core_stats()
        stats.pop("outputs")
        return {
            "host": self.config.agent.hostname,
            "config": self.config.path,
            "started_ns": self.started_ns,
            "reloads": self.reloads,
            "gc_frozen_objects": gcsettle.frozen_objects(),
            "collectors": self.scheduler.status(),
            "queue_points": self.pipeline.queue_points,
            "spool": {
                "bytes": self.spool.total_bytes,
                "max_bytes": self.spool.max_bytes,
                "memory_bytes": self.spool.memory_bytes,
                "next_seq": self.spool.next_seq,
                **self.spool.stats.__dict__,
            },
            "outputs": outputs,
            "encoding": {
                "sanitized_values": self.pipeline.encoder_v2.stats.sanitized_values,
                "sanitized_values_v1": self.pipeline.encoder_v1.stats.sanitized_values,
                "dropped_fields": self.pipeline.encoder_v2.stats.dropped_fields,
                "dropped_points": self.pipeline.encoder_v2.stats.dropped_points,
            },
            "totals": stats,
            "alerts": self.alerts.status(),
            **sections,
        }

    def status_line(self) -> str:
        stats = self.core_stats()
        return (
            f"{len(self.scheduler.tasks)} collectors, {len(self.workers)} outputs, "
            f"spool {stats['spool_bytes']} bytes, written {stats['points_written']}, "
            f"dropped {stats['points_dropped']}"
        )

    def _start_output(self, output: Output) -> None:
        worker = OutputWorker(output, self.spool, self.config.agent.data_dir)
        task = asyncio.create_task(worker.run(), name=f"output:{output.name}")
        self.workers[output.name] = (worker, task)
        self.pipeline.workers.append(worker)

    async def _stop_outputs(self, drain_s: float, sender_s: float = STOP_SENDER_S,
                            final: bool = False) -> None:
        """All outputs at once: drain (deliver what is pending) for up to drain_s, then end
        every sender within sender_s; a request still in flight then is abandoned. On the
        final stop, each output that leaves records undelivered says so in one line."""
        items = list(self.workers.items())
        if drain_s > 0:
            await asyncio.gather(*(worker.drain(drain_s) for _, (worker, _) in items))
        for _, (worker, task) in items:
            worker.stop_timeout_s = max(0.0, sender_s)
            worker.signal_stop()  # every sender at once: their deadlines run in parallel
            task.cancel()
        if items:
            # run() ends by itself within sender_s (plus a cursor write); the margin only
            # guards against a slow disk.
            await asyncio.wait([task for _, (_, task) in items], timeout=sender_s + 1.0)
        for name, (worker, task) in items:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("output %s: stopped with %r", name, task.exception())
            abandoned = worker.abandoned or not task.done()
            if final or abandoned:
                self._report_undelivered(name, worker, abandoned, final)
            if not abandoned:  # an abandoned sender may still be using the connection
                await asyncio.to_thread(worker.output.close)
        self.workers.clear()
        self.pipeline.workers.clear()

    def _report_undelivered(self, name: str, worker: OutputWorker, abandoned: bool,
                            final: bool) -> None:
        """One line for an output that a stop leaves with records to deliver."""
        records, points = self.spool.lag(name)
        if not records and not abandoned:
            return
        age_s = worker.request_age_s()
        if abandoned and age_s is not None:
            why = f"abandoned a request in flight for {age_s:.1f}s"
        elif worker.last_attempt_failed:
            why = f"server unreachable ({worker.stats.last_error})"
        else:
            why = "out of time while delivering"
        log.warning("output %s: stop gave up: %s; %d records (%d points) stay in the spool "
                    "for %s", name, why, records, points,
                    "the next start" if final else "the rebuilt output")

    def _start_prometheus(self) -> None:
        if self.config.outputs.prometheus is None:
            return
        from agent.outputs.prometheus import PrometheusExporter

        self.prometheus = PrometheusExporter(self.config.outputs.prometheus.listen)
        self.prometheus.start()
        self.pipeline.observers.append(self.prometheus.observe)

    def _stop_prometheus(self) -> None:
        if self.prometheus is not None:
            with contextlib.suppress(ValueError):
                self.pipeline.observers.remove(self.prometheus.observe)
            self.prometheus.close()
            self.prometheus = None

    def _start_group(self, name: str) -> None:
        ctx = self._context(self.config)
        try:
            built = registry.build_group(name, ctx)
        except Exception as exc:
            log.error("collector %s could not start: %s", name, exc)
            return
        self.groups[name] = (ctx, built)
        self.controls.update(built.controls)
        self.status_providers.update(built.status)
        for collector in built.collectors:
            self.scheduler.start(collector)

    async def _stop_group(self, name: str) -> None:
        if name not in self.groups:
            return
        _, built = self.groups.pop(name)
        for collector in built.collectors:
            await self.scheduler.stop(collector)
        for command in built.controls:
            self.controls.pop(command, None)
        for section in built.status:
            self.status_providers.pop(section, None)

    # ------------------------------------------------------------ life cycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.pipeline.bind_loop(loop)
        for warning in secret_file_warnings(self.config):
            log.warning("%s", warning)
        if self.spool.stats.torn_records:
            log.warning("spool: %d torn record(s) skipped at start", self.spool.stats.torn_records)
        # What can fail on the host's files comes first, before anything has started (no
        # ExaBGP child to leave behind): a secret file this user cannot read, an unusable
        # control socket path. Both are config errors, so systemd does not restart in a loop.
        outputs = self._build_outputs_or_refuse(self.config)
        self.control = ControlServer(self.config.agent.control_socket, self.controls)
        try:
            await self.control.start()
        except OSError as exc:
            raise _unusable(self.config, "agent.control_socket",
                            self.config.agent.control_socket, exc) from exc
        for output in outputs:
            self._start_output(output)
        self._start_prometheus()
        # The alert engine watches every durable batch (agent/alerts/engine.py).
        self.pipeline.observers.append(self.alerts.observe)
        for name in self.config.agent.collectors:
            self._start_group(name)
        self._tasks = [
            asyncio.create_task(self.pipeline.run_flusher(FLUSH_GAP_S, FLUSH_GATHER_S),
                                name="flusher"),
            asyncio.create_task(self._housekeeping(), name="housekeeping"),
            asyncio.create_task(self._ticker(), name="ticker"),
            asyncio.create_task(self._alert_ticker(), name="alerts"),
            asyncio.create_task(watchdog_loop(self.notifier, self.heartbeat.made_progress),
                                name="watchdog"),
        ]
        self._settle()
        log.info("started: %s", self.status_line())
        self.notifier.ready(self.status_line())

    def _settle(self) -> None:
        """Freeze what survived the start (or a reload) once the collectors have polled
        once (agent/gcsettle.py)."""
        if self._settling is not None:
            self._settling.cancel()
        delay_s = self.config.agent.interval_s + gcsettle.SETTLE_AFTER_FIRST_POLL_S
        self._settling = asyncio.create_task(gcsettle.freeze_when_settled(delay_s),
                                             name="gc-settle")

    async def _ticker(self) -> None:
        """Proves the loop is alive to the watchdog; a stuck loop stops the beats. Three
        beats per keep-alive period, none when systemd does not watch: a timed wake-up
        costs about 80 us of CPU on a VM, and at a fixed 2 Hz these were two of the idle
        event loop's three wake-ups a second."""
        interval_s = self.notifier.watchdog_interval_s
        if interval_s is None:
            return
        while True:
            self.heartbeat.beat()
            await asyncio.sleep(interval_s / 3)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(EXPIRE_EVERY_S)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.spool.expire)
            self.notifier.status(self.status_line())

    async def _control_reload(self, _args: dict[str, Any]) -> dict[str, Any]:
        """`egress-agent reload` (the unit's ExecReload): the outcome goes back to the
        caller, so `systemctl reload` returns when the config is applied, and fails when
        it is refused, also on a systemd without Type=notify-reload."""
        applied = await self.reload()
        return {"applied": applied, "config": str(self.config.path),
                "problems": [] if applied else self.reload_problems}

    async def reload(self, path: str | None = None) -> bool:
        """Apply a new config when valid; keep the old one and log why when not."""
        async with self._reload_lock:
            return await self._reload(path)

    @staticmethod
    def _build_outputs_or_refuse(config: Config) -> list[Output]:
        """The outputs of `config`; a secret file that cannot be read is a ConfigError."""
        try:
            return build_outputs(config)
        except OSError as exc:
            key = secret_file_keys(config).get(str(exc.filename), "outputs")
            raise _unusable(config, key, Path(str(exc.filename)), exc) from exc

    async def _reload(self, path: str | None) -> bool:
        self.notifier.reloading()
        try:
            new = await asyncio.to_thread(load_config, path or self.config.path)
            # Outputs are built before anything changes: a secret file this user cannot
            # read refuses the reload, as at start, rather than failing half-way.
            outputs = (self._build_outputs_or_refuse(new)
                       if new.outputs != self.config.outputs else None)
        except ConfigError as exc:
            self.reload_problems = str(exc).splitlines()
            for line in self.reload_problems:
                log.error("reload refused: %s", line)
            self.notifier.ready(f"reload refused, running on the old config; {self.status_line()}")
            return False
        old = self.config
        if new.agent.data_dir != old.agent.data_dir:
            log.warning("reload: agent.data_dir changed; takes effect at the next restart")
        if new.agent.control_socket != old.agent.control_socket:
            log.warning("reload: agent.control_socket changed; takes effect at the next restart")
        self.config = new
        self.pipeline.hostname = new.agent.hostname
        self.spool.max_bytes = new.agent.spool_max_bytes
        self.spool.retention_s = new.agent.retention_s
        self.spool.fsync_policy = new.agent.fsync
        self.spool.fsync_interval_s = new.agent.fsync_interval_s
        await self.pipeline.flush_all()
        if outputs is not None:
            await self._stop_outputs(drain_s=0)
            self._stop_prometheus()
            for output in outputs:
                self._start_output(output)
            self._start_prometheus()
        if (new.agent.log_level, new.agent.log_format) != (old.agent.log_level,
                                                           old.agent.log_format):
            from agent.logsetup import configure_logging

            configure_logging(new.agent.log_level, new.agent.log_format)
        self.alerts.reconfigure(new)
        kept: list[str] = []
        for name in list(self.groups):
            wanted = name in new.agent.collectors
            ctx, built = self.groups[name]
            unchanged = registry.config_slice(name, new) == registry.config_slice(name, old)
            if wanted and (unchanged or await self._reconfigure_in_place(built.collectors, new)):
                ctx.config = new  # once every collector of the group has taken it
                kept.append(name)
                continue
            await self._stop_group(name)
        for name in new.agent.collectors:
            if name not in self.groups:
                self._start_group(name)
        self.reloads += 1
        gcsettle.thaw()  # the replaced collectors' cycles are collectable again
        self._settle()
        log.info("reloaded %s (kept: %s)", new.path, ", ".join(kept) or "none")
        self.notifier.ready(self.status_line())
        return True

    async def _reconfigure_in_place(self, group: list[Collector], new: Config) -> bool:
        """A collector that can apply a new config without a restart (BGP: only changed
        sessions are touched) says so by returning True from `reconfigure`; the first that
        returns False has the group restarted."""
        if not group:
            return False
        for collector in group:
            try:
                applied = await collector.reconfigure(new)
            except Exception as exc:
                log.warning("collector %s: reconfigure failed (%s); restarting it",
                            collector.name, exc)
                return False
            if not applied:
                return False
        return True

    async def stop(self) -> None:
        """Within STOP_TIMEOUT_S (plus the spool's own writes and fsyncs, which are what
        makes the queue durable and are never cut short)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT_S

        def left(reserve_s: float = 0.0) -> float:
            return max(0.0, deadline - reserve_s - loop.time())

        self.notifier.stopping()
        log.info("stopping")
        if self._settling is not None:
            self._settling.cancel()
        await self.scheduler.stop_all(min(STOP_COLLECTORS_S, left()))
        await self.pipeline.flush_all()
        for task in self._tasks:
            if task.get_name() != "flusher":
                task.cancel()
        reserve_s = STOP_SENDER_S + STOP_TASKS_S
        await self._stop_outputs(drain_s=min(STOP_DRAIN_S, left(reserve_s)),
                                 sender_s=min(STOP_SENDER_S, left(STOP_TASKS_S)), final=True)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=max(0.1, min(STOP_TASKS_S, left())))
        await self.pipeline.flush_all()
        self._stop_prometheus()
        if self.control is not None:
            await self.control.close()
        await asyncio.to_thread(self.spool.close)
        self.scheduler.shutdown()
        log.info("stopped")

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload_requested.set()

    async def run(self, duration_s: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        await self.start()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            while not self._stop.is_set():
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                if timeout == 0.0:
                    break
                stop_wait = asyncio.create_task(self._stop.wait())
                reload_wait = asyncio.create_task(self._reload_requested.wait())
                done, pending = await asyncio.wait(
                    {stop_wait, reload_wait}, timeout=timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in pending:
                    task.cancel()
                if reload_wait in done and not self._stop.is_set():
                    self._reload_requested.clear()
                    await self.reload()
        finally:
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
