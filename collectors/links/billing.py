"""95th-percentile (burstable) billing per carrier: `billing` points.

Every 5 minutes (wall-clock slots :00, :05, ...) the average rx and tx rate of each carrier
uplink over the slot is taken from its byte counters and appended to a per-carrier,
per-month sample file under `<data_dir>/billing/` (append + fsync: a crash loses at most the
sample being written, and a torn last line is ignored on reading). The counter snapshot the
next average starts from is kept beside it (write-temp-fsync-rename), so a restart loses no
traffic: the first sample after a restart averages over the whole gap (up to one hour;
slots of a longer outage stay empty rather than invented).

At `[billing].interval` the collector writes, per carrier, p95 over the samples of the
current billing month (calendar month, UTC) of max(rx, tx) (or rx or tx, `[billing].rate`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.collector import Built, CollectorContext, PolledCollector
from agent.config import CarrierConfig
from agent.points import FieldValue, Point
from collectors.links.netlink import RtNetlink
from collectors.links.rates import billing_rate, percentile_95, rate_bps, utilization

log = logging.getLogger(__name__)

SAMPLE_PERIOD_S = 300.0
MAX_GAP_SLOTS = 12  # a gap longer than an hour leaves its slots empty


def month_of(slot_start_s: float) -> str:
    return datetime.fromtimestamp(slot_start_s, UTC).strftime("%Y-%m")


def _safe_name(name: str) -> str:
    """A carrier name as a file name: [A-Za-z0-9_-] kept, anything else %XX-encoded."""
    return re.sub(r"[^A-Za-z0-9_-]", lambda m: "".join(f"%{b:02X}" for b in m.group().encode()),
                  name)


@dataclass
class Snapshot:
    """Counters of the uplink at the start of the average being accumulated."""

    ifindex: int
    rx_bytes: int
    tx_bytes: int
    time_s: float


class BillingStore:
    """Samples of one carrier on disk: `<dir>/<YYYY-MM>.samples` lines `slot rx_bps tx_bps`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory  # made on the first write, not before
        self._made = False
        self._months: dict[str, dict[int, tuple[float, float]]] = {}

    def _path(self, month: str) -> Path:
        return self.directory / f"{month}.samples"

    def samples(self, month: str) -> dict[int, tuple[float, float]]:
        """slot start (s) → (rx_bps, tx_bps) of one month; read once, then kept."""
        cached = self._months.get(month)
        if cached is not None:
            return cached
        samples: dict[int, tuple[float, float]] = {}
        try:
            text = self._path(month).read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            text = ""
        for line in text.split("\n"):
            parts = line.split()
            if len(parts) != 3:
                continue  # empty or torn (crash mid-write)
            try:
                slot, rx, tx = int(parts[0]), float(parts[1]), float(parts[2])
            except ValueError:
                continue
            if math.isfinite(rx) and math.isfinite(tx) and rx >= 0 and tx >= 0:
                samples[slot] = (rx, tx)
        self._months = {month: samples}  # only the current month stays in memory
        return samples

    def append(self, slot_s: int, rx_bps: float, tx_bps: float) -> bool:
        """Persist one sample (fsync before returning); False if the slot already has one."""
        month = month_of(slot_s)
        samples = self.samples(month)
        if slot_s in samples:
            return False
        line = f"{slot_s} {rx_bps:.3f} {tx_bps:.3f}\n".encode()
        self._mkdir()
        fd = os.open(self._path(month), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            # A torn line from a crash ends without "\n": start ours on a fresh line.
            if os.fstat(fd).st_size and not self._ends_with_newline(month):
                line = b"\n" + line
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        samples[slot_s] = (rx_bps, tx_bps)
        return True

    def _ends_with_newline(self, month: str) -> bool:
        with open(self._path(month), "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def load_snapshot(self) -> Snapshot | None:
        try:
            data = json.loads((self.directory / "snapshot.json").read_text())
            return Snapshot(int(data["ifindex"]), int(data["rx_bytes"]), int(data["tx_bytes"]),
                            float(data["time_s"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _mkdir(self) -> None:
        if not self._made:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._made = True

    def save_snapshot(self, snap: Snapshot) -> None:
        self._mkdir()
        path = self.directory / "snapshot.json"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            json.dump(snap.__dict__, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class BillingCollector(PolledCollector):
    """Samples carrier uplinks every 5 minutes; writes `billing` at `[billing].interval`."""

    name = "billing"

    def __init__(self, ctx: CollectorContext, sample_period_s: float = SAMPLE_PERIOD_S,
                 netns: str | None = None) -> None:
        super().__init__(ctx)
        self.sample_period_s = sample_period_s
        self.mode = ctx.config.billing.rate
        self.write_interval_s: float = ctx.config.billing.interval_s
        self.carriers: tuple[CarrierConfig, ...] = ctx.config.carriers
        self.nl = RtNetlink(netns)
        self.stores = {
            c.name: BillingStore(ctx.data_dir / "billing" / _safe_name(c.name))
            for c in self.carriers
        }
        self.snapshots: dict[str, Snapshot | None] = {
            name: store.load_snapshot() for name, store in self.stores.items()
        }
        self._last_write_slot: int | None = None

    @property
    def interval_s(self) -> float:
        return min(self.sample_period_s, self.write_interval_s)

    def close(self) -> None:
        self.nl.close()

    def status(self) -> dict[str, Any]:
        now = time.time()
        month = month_of(now)
        return {c.name: {"samples": len(self.stores[c.name].samples(month))}
                for c in self.carriers}

    def sample(self, now_s: float | None = None) -> None:
        """Take the 5-minute samples due at `now_s` (called by collect, or directly by tests)."""
        now = time.time() if now_s is None else now_s
        for carrier in self.carriers:
            link = self.nl.get_link_by_name(carrier.interface)
            if link is None:
                continue  # uplink absent: its slots stay empty
            counters = self.nl.get_stats64(link.index)
            if counters is None:
                continue
            rx_bytes, tx_bytes = counters[2], counters[3]
            current = Snapshot(link.index, rx_bytes, tx_bytes, now)
            store = self.stores[carrier.name]
            prev = self.snapshots.get(carrier.name)
            if prev is None or prev.ifindex != link.index or now <= prev.time_s:
                self._set_snapshot(carrier.name, current)
                continue
            period = self.sample_period_s
            first_slot = math.floor(prev.time_s / period)
            this_slot = math.floor(now / period)
            if this_slot == first_slot:
                continue  # still inside the slot: keep accumulating
            elapsed = now - prev.time_s
            capacity = carrier.committed_mbps * 1e6 * 10 if carrier.committed_mbps else None
            rx_bps = rate_bps(prev.rx_bytes, rx_bytes, elapsed, capacity)
            tx_bps = rate_bps(prev.tx_bytes, tx_bytes, elapsed, capacity)
            slots = this_slot - first_slot
            if rx_bps is not None and tx_bps is not None and slots <= MAX_GAP_SLOTS:
                for slot in range(first_slot, this_slot):
                    store.append(int(slot * period), rx_bps, tx_bps)
            self._set_snapshot(carrier.name, current)

    def _set_snapshot(self, carrier: str, snap: Snapshot) -> None:
        self.snapshots[carrier] = snap
        self.stores[carrier].save_snapshot(snap)

    def billing_points(self, now_s: float | None = None,
                       time_ns: int = 0) -> list[Point]:
        """p95 of the billing month `now_s` falls in, per carrier (time_ns 0: stamped by
        the scheduler)."""
        now = time.time() if now_s is None else now_s
        month = month_of(now)
        points = []
        for carrier in self.carriers:
            samples = self.stores[carrier.name].samples(month)
            rates = [billing_rate(rx, tx, self.mode) for rx, tx in samples.values()]
            fields: dict[str, FieldValue] = {"samples": len(rates)}
            p95 = percentile_95(rates)
            if p95 is not None:
                fields["p95_bps"] = p95
            if carrier.committed_mbps:
                committed_bps = carrier.committed_mbps * 1e6
                fields["committed_bps"] = committed_bps
                p95_util = utilization(p95, carrier.committed_mbps, None)
                if p95_util is not None:
                    fields["p95_util"] = p95_util
            points.append(Point("billing", {"carrier": carrier.name,
                                            "interface": carrier.interface}, fields, time_ns))
        return points

    def collect(self, now_s: float | None = None) -> list[Point]:
        now = time.time() if now_s is None else now_s
        self.sample(now)
        write_slot = math.floor(now / self.write_interval_s)
        if write_slot == self._last_write_slot:
            return []
        self._last_write_slot = write_slot
        points = self.billing_points(now)
        previous = now - max(self.write_interval_s, self.sample_period_s) - 1.0
        if month_of(previous) != month_of(now):
            # First write of a new month: the closed month's final figure (its last slot
            # included), stamped at the month's last second.
            month_start = math.floor(
                datetime.strptime(month_of(now), "%Y-%m").replace(tzinfo=UTC).timestamp())
            points += self.billing_points(month_start - 1, (month_start - 1) * 10**9)
        return points


def create_billing(ctx: CollectorContext) -> Built:
    if not any(c.interface for c in ctx.config.carriers):
        return Built()
    collector = BillingCollector(ctx)
    return Built([collector], status={"billing": collector.status})
