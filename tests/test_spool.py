"""The spool: durable append, cursors, torn records, size bound, retention."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from agent.points import LineEncoder, Point
from agent.spool import Spool
from agent.spool_format import HEADER_BYTES, SpoolRecord


def batch(start: int, n: int = 10) -> SpoolRecord:
    points = [Point("m", {"k": str(i % 3)}, {"v": i}, 1_000 + i) for i in range(start, start + n)]
    return SpoolRecord(LineEncoder().encode_batch(points), None, n, points[0].time_ns)


def values(records: list[tuple[int, SpoolRecord]]) -> list[int]:
    return [int(line.rsplit(b"v=", 1)[1].split(b"i")[0]) for _, r in records
            for line in r.lines_v2.split(b"\n")]


def test_append_read_and_cursor_survive_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.register_output("out")
    seqs = [spool.append(batch(i * 10)) for i in range(5)]
    assert seqs == [0, 1, 2, 3, 4]
    got = spool.read_from(spool.cursor("out"), max_points=25)
    assert [s for s, _ in got] == [0, 1, 2]  # whole records until >= 25 points
    spool.commit("out", 3)
    spool.close()

    reopened = Spool(tmp_path)
    assert reopened.cursor("out") == 3
    rest = reopened.read_from(3, 1000)
    assert values(rest) == list(range(30, 50))
    assert reopened.next_seq == 5
    assert reopened.lag("out") == (2, 20)


def test_torn_last_record_is_cut_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(batch(0))
    spool.append(batch(10))
    spool.close()
    segment = next((tmp_path / "spool").glob("*.seg"))
    size = segment.stat().st_size
    with open(segment, "r+b") as handle:  # a write cut short by kill -9 or power loss
        handle.truncate(size - 7)
    reopened = Spool(tmp_path)
    assert reopened.stats.torn_records == 1
    assert values(reopened.read_from(0, 100)) == list(range(10))
    # appends continue after the cut, with the next sequence number
    assert reopened.append(batch(100)) == 1
    reopened.close()
    again = Spool(tmp_path)
    assert again.stats.torn_records == 0
    assert [s for s, _ in again.read_from(0, 100)] == [0, 1]


def test_flipped_byte_is_detected_by_checksum(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(batch(0))
    spool.append(batch(10))
    spool.close()
    segment = next((tmp_path / "spool").glob("*.seg"))
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF
    segment.write_bytes(bytes(data))
    reopened = Spool(tmp_path)
    assert reopened.stats.torn_records == 1
    assert [s for s, _ in reopened.read_from(0, 100)] == [0]


def test_full_spool_drops_oldest_and_counts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=20_000, segment_max_bytes=4_000)
    spool.register_output("down")  # never delivers
    for i in range(100):
        spool.append(batch(i * 10))
    assert spool.total_bytes <= 20_000
    assert spool.stats.dropped_points > 0
    held = sum(r.n_points for _, r in spool.read_from(spool.cursor("down"), 10**9))
    assert held + spool.stats.dropped_points == 1000  # every point is held or counted
    # the lagging cursor was moved to the oldest held record
    assert spool.read_from(spool.cursor("down"), 1)[0][0] == spool.cursor("down")


def test_delivered_points_are_not_counted_as_dropped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=20_000, segment_max_bytes=4_000)
    spool.register_output("ok")
    for i in range(100):
        seq = spool.append(batch(i * 10))
        spool.commit("ok", seq + 1)
    assert spool.stats.dropped_segments > 0
    assert spool.stats.dropped_points == 0


def test_retention_expires_only_delivered_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, retention_s=3600, segment_max_bytes=1_000)
    spool.register_output("out")
    for i in range(20):
        spool.append(batch(i * 10))
    segments = len(list((tmp_path / "spool").glob("*.seg")))
    assert segments > 3
    future = os.path.getmtime(next((tmp_path / "spool").glob("*.seg"))) + 7200
    assert spool.expire(now_s=future) == 0  # nothing delivered yet
    spool.commit("out", 10)
    removed = spool.expire(now_s=future)
    assert removed >= 1
    assert spool.read_from(spool.cursor("out"), 1)[0][0] == 10


def test_embedded_store_filters_by_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(batch(0))
    reader = Spool(tmp_path, read_only=True)
    assert [p.time_ns for p in reader.iter_points(since_ns=1_005)] == list(range(1_005, 1_010))


def test_both_encodings_are_kept_when_they_differ(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(SpoolRecord(b"m,t=a\\\\b v=1i 1", b"m,t=a\\b v=1i 1", 1, 1))
    spool.close()
    record = Spool(tmp_path).read_from(0, 10)[0][1]
    assert record.lines(2) == b"m,t=a\\\\b v=1i 1"
    assert record.lines(1) == b"m,t=a\\b v=1i 1"
    assert [p.tags["t"] for p in Spool(tmp_path).iter_points()] == ["a\\b"]


def test_header_size_is_stable() -> None:
    assert HEADER_BYTES == 28  # on-disk format; changing it needs a migration


def test_a_write_that_fails_half_way_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk mid-append: the append raises, the half record is cut at once, and the
    next append and a reopen see only whole records (nothing counted as torn)."""
    import agent.spool as spool_module

    spool = Spool(tmp_path, fsync="never")
    spool.append(batch(0))
    real_writev = os.writev

    def full_disk(fd: int, parts: list[bytes]) -> int:
        os.write(fd, b"".join(parts)[:HEADER_BYTES + 7])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module.os, "writev", full_disk)
    with pytest.raises(OSError):
        spool.append(batch(10))
    monkeypatch.setattr(spool_module.os, "writev", real_writev)
    spool.append(batch(20))
    assert values(spool.read_from(0, 1000)) == [*range(10), *range(20, 30)]
    spool.close()
    reopened = Spool(tmp_path, fsync="never")
    assert values(reopened.read_from(0, 1000)) == [*range(10), *range(20, 30)]
    assert reopened.stats.torn_records == 0 and reopened.stats.corrupt_records == 0


def _deliver(spool: Spool, name: str, count: int) -> list[bool]:
    """Reads and acknowledges `count` records one by one; True where one came from memory."""
    from_memory = []
    for _ in range(count):
        before = spool.stats.records_read_from_disk
        (seq, record), = spool.read_from(spool.cursor(name), max_points=1)
        assert values([(seq, record)]) == list(range(seq * 10, seq * 10 + 10))
        from_memory.append(spool.stats.records_read_from_disk == before)
        spool.advance(name, seq + 1)
    return from_memory


def test_delivered_records_leave_memory(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.register_output("out")
    sizes = [len(spool.read_from(spool.append(batch(i * 10)), 1)[0][1].lines_v2)
             for i in range(3)]
    assert spool.memory_bytes == sum(sizes)
    assert _deliver(spool, "out", 2) == [True, True]
    assert spool.memory_bytes == sizes[2]
    assert _deliver(spool, "out", 1) == [True]
    assert spool.memory_bytes == 0


def test_without_outputs_nothing_is_held_in_memory(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(batch(0))
    assert spool.memory_bytes == 0


def test_a_burst_over_the_memory_budget_keeps_what_the_output_reads_next(
    tmp_path: Path,
) -> None:
    """Over budget, new records stay on disk only: the oldest, held in memory, are the ones
    the output sends next, and memory they free takes later records in."""
    size = len(batch(0).lines_v2)
    spool = Spool(tmp_path, memory_max_bytes=3 * size + size // 2)
    spool.register_output("out")
    for i in range(5):
        spool.append(batch(i * 10))
    assert _deliver(spool, "out", 2) == [True, True]
    for i in range(5, 10):
        spool.append(batch(i * 10))
    #                                    2     3      4      5     6     7      8      9
    assert _deliver(spool, "out", 8) == [True, False, False, True, True, False, False, False]
    assert spool.stats.records_read_from_disk == 5


def test_a_stuck_output_does_not_make_a_healthy_one_read_the_disk(tmp_path: Path) -> None:
    size = len(batch(0).lines_v2)
    spool = Spool(tmp_path, memory_max_bytes=3 * size + size // 2)
    spool.register_output("stuck")
    spool.register_output("healthy")
    for i in range(8):
        spool.append(batch(i * 10))
        assert _deliver(spool, "healthy", 1) == [True]
    assert spool.memory_bytes <= 3 * size + size // 2
    assert _deliver(spool, "stuck", 8) == [False] * 5 + [True] * 3
