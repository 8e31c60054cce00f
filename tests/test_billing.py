"""95th-percentile billing: store, restart, known sample sets, real counters in a namespace."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.links.billing import BillingCollector, BillingStore, month_of
from tests.links_support import Scratch, make_config, make_ctx, needs_root

BASE = 1_800_000_000 - (1_800_000_000 % 300) + 1  # just after a slot start, mid-January 2027
SLOT = 300


def test_known_sample_set_p95_and_restart(tmp_path: Path) -> None:
    store = BillingStore(tmp_path / "billing" / "telecom")
    # 200 five-minute samples: rx 1..200 Mbit/s shuffled, tx half of rx
    values = list(range(1, 201))
    random.Random(7).shuffle(values)
    start = BASE - 1
    for i, mbps in enumerate(values):
        assert store.append(start + i * SLOT, mbps * 1e6, mbps * 0.5e6)
    assert not store.append(start, 1.0, 1.0)  # one sample per slot
    config = make_config(tmp_path, "eth-none", committed_mbps=250)
    # Hand-computed: 200 samples, discard 200*5//100 = 10 (191..200), the 190 remains.
    expected = 190e6
    # A restart: a new collector reads the same directory.
    collector = BillingCollector(make_ctx(config, tmp_path))
    try:
        (point,) = collector.billing_points(start + 200 * SLOT)
    finally:
        collector.close()
    assert point.measurement == "billing"
    assert point.tags == {"carrier": "telecom", "interface": "eth-none"}
    assert point.fields == {
        "samples": 200, "p95_bps": expected, "committed_bps": 250e6,
        "p95_util": expected / 250e6,
    }


def test_rate_modes_rx_tx(tmp_path: Path) -> None:
    store = BillingStore(tmp_path / "billing" / "telecom")
    for i in range(20):
        store.append(BASE - 1 + i * SLOT, float(i), float(100 - i))  # tx dominates
    for mode, expected in (("max", 99.0), ("rx", 18.0), ("tx", 99.0)):
        config = make_config(tmp_path, "eth-none")
        config = type(config)(**{**config.__dict__,
                                 "billing": type(config.billing)(rate=mode, interval_s=60)})
        collector = BillingCollector(make_ctx(config, tmp_path))
        try:
            (point,) = collector.billing_points(BASE + 20 * SLOT)
        finally:
            collector.close()
        assert point.fields["p95_bps"] == expected, mode


def test_torn_last_line_is_ignored_and_not_glued(tmp_path: Path) -> None:
    store = BillingStore(tmp_path)
    store.append(BASE - 1, 10.0, 20.0)
    path = tmp_path / f"{month_of(BASE)}.samples"
    with open(path, "ab") as handle:
        handle.write(b"%d 99" % (BASE - 1 + SLOT))  # crash mid-write
    reread = BillingStore(tmp_path)
    assert reread.samples(month_of(BASE)) == {BASE - 1: (10.0, 20.0)}
    assert reread.append(BASE - 1 + 2 * SLOT, 30.0, 40.0)
    again = BillingStore(tmp_path)
    assert again.samples(month_of(BASE)) == {BASE - 1: (10.0, 20.0),
                                             BASE - 1 + 2 * SLOT: (30.0, 40.0)}


def test_only_the_current_month_counts(tmp_path: Path) -> None:
    store = BillingStore(tmp_path / "billing" / "telecom")
    jan_end = 1_801_440_000 - SLOT  # 2027-01-31 23:55 UTC
    assert month_of(jan_end) == "2027-01" and month_of(jan_end + SLOT) == "2027-02"
    store.append(jan_end, 500e6, 500e6)
    store.append(jan_end + SLOT, 1e6, 1e6)
    config = make_config(tmp_path, "eth-none")
    collector = BillingCollector(make_ctx(config, tmp_path))
    try:
        (point,) = collector.billing_points(jan_end + 2 * SLOT)
    finally:
        collector.close()
    assert point.fields["samples"] == 1 and point.fields["p95_bps"] == 1e6


@pytest.fixture
def scratch() -> Iterator[Scratch]:
    needs_root()
    s = Scratch()
    try:
        yield s
    finally:
        s.close()


@pytest.mark.lab
def test_samples_from_real_counters_survive_a_restart(scratch: Scratch, tmp_path: Path) -> None:
    scratch.static_neighbours()
    config = make_config(tmp_path, scratch.uplink, committed_mbps=10)
    first = BillingCollector(make_ctx(config, tmp_path), netns=scratch.ns)
    try:
        first.sample(BASE)  # the snapshot the first average starts from
        k0 = scratch.kernel_counters()
        scratch.send_udp(1000, 958)  # 1000 frames of 1000 bytes out
        first.sample(BASE + 100)  # same slot: nothing yet
        assert first.stores["telecom"].samples(month_of(BASE)) == {}
        first.sample(BASE + SLOT)
        k1 = scratch.kernel_counters()
    finally:
        first.close()  # "crash": nothing else is saved than what sample() wrote
    tx1 = (k1["tx_bytes"] - k0["tx_bytes"]) * 8 / SLOT
    rx1 = (k1["rx_bytes"] - k0["rx_bytes"]) * 8 / SLOT
    assert tx1 == pytest.approx(1000 * 1000 * 8 / SLOT)

    second = BillingCollector(make_ctx(config, tmp_path), netns=scratch.ns)
    try:
        scratch.send_udp(3000, 958)  # traffic while "down" is counted after the restart
        second.sample(BASE + 2 * SLOT)
        k2 = scratch.kernel_counters()
        samples = second.stores["telecom"].samples(month_of(BASE))
        (point,) = second.billing_points(BASE + 2 * SLOT)
    finally:
        second.close()
    slot0 = BASE - 1
    assert samples[slot0] == (pytest.approx(rx1, abs=0.01), pytest.approx(tx1, abs=0.01))
    tx2 = (k2["tx_bytes"] - k1["tx_bytes"]) * 8 / SLOT
    assert samples[slot0 + SLOT][1] == pytest.approx(tx2, abs=0.01)
    assert tx2 == pytest.approx(3000 * 1000 * 8 / SLOT)
    # two samples: nothing discarded, p95 = the higher max(rx, tx)
    assert point.fields["samples"] == 2
    assert point.fields["p95_bps"] == pytest.approx(tx2, abs=0.01)
    assert point.fields["p95_util"] == pytest.approx(tx2 / 10e6, abs=1e-6)


@pytest.mark.lab
def test_reset_and_long_gap_give_no_sample(scratch: Scratch, tmp_path: Path) -> None:
    config = make_config(tmp_path, scratch.uplink)
    collector = BillingCollector(make_ctx(config, tmp_path), netns=scratch.ns)
    try:
        collector.sample(BASE)
        collector.sample(BASE + 13 * SLOT)  # agent away for 65 minutes: slots stay empty
        assert collector.stores["telecom"].samples(month_of(BASE)) == {}
        # uplink re-created: new ifindex, counters from zero: no sample from the old snapshot
        scratch.ip("link", "del", scratch.uplink)
        scratch.ip("link", "add", scratch.uplink, "type", "veth", "peer", "name", "lkbr1")
        collector.sample(BASE + 14 * SLOT)
        assert collector.stores["telecom"].samples(month_of(BASE)) == {}
        collector.sample(BASE + 15 * SLOT)
        assert list(collector.stores["telecom"].samples(month_of(BASE))) == [
            BASE - 1 + 14 * SLOT]
    finally:
        collector.close()


@pytest.mark.lab
def test_collect_writes_billing_at_its_interval(scratch: Scratch, tmp_path: Path) -> None:
    config = make_config(tmp_path, scratch.uplink)  # [billing] interval = 1s
    collector = BillingCollector(make_ctx(config, tmp_path), netns=scratch.ns)
    try:
        assert collector.interval_s == 1.0  # sampled at least as often as written
        # Mid-month: in the first write interval of a month, collect() also writes the closed
        # month's final figure (failed once when run in the first hour of December).
        points = collector.collect(BASE)
        assert [p.measurement for p in points] == ["billing"]
        assert points[0].fields["samples"] == 0 and "p95_bps" not in points[0].fields
        collector.write_interval_s = 3600.0
        collector._last_write_slot = None
        assert [p.measurement for p in collector.collect(BASE + 1)] == ["billing"]
        assert collector.collect(BASE + 2) == []  # same hour: not written again
    finally:
        collector.close()


@pytest.mark.lab
def test_first_write_of_a_month_closes_the_previous_one(scratch: Scratch,
                                                        tmp_path: Path) -> None:
    feb_start = 1_801_440_000  # 2027-02-01 00:00 UTC
    config = make_config(tmp_path, scratch.uplink)
    collector = BillingCollector(make_ctx(config, tmp_path), netns=scratch.ns)
    store = collector.stores["telecom"]
    store.append(feb_start - 2 * SLOT, 7e6, 1e6)
    store.append(feb_start - SLOT, 9e6, 1e6)
    store.append(feb_start, 2e6, 1e6)
    try:
        points = collector.billing_points(feb_start + 10)
        assert [p.fields["samples"] for p in points] == [1]
        points = collector.collect(feb_start + 30.0)
    finally:
        collector.close()
    assert [(p.fields["samples"], p.time_ns) for p in points] == [
        (1, 0), (2, (feb_start - 1) * 10**9)]
    assert points[1].fields["p95_bps"] == 9e6
