"""Write-ahead spool: every batch lands here before any output sees it.

Layout under `<data_dir>/spool/`: segment files `<first_seq>.seg`, each a run of records
`[u32 payload_len][u32 crc32][u64 seq][u32 n_points][u64 first_time_ns][payload]`. The
payload is the batch already encoded as line protocol for InfluxDB 2.x+ (`[0][lines]`), or,
when a tag held a backslash (the one thing 1.x reads differently), both encodings
(`[1][u32 len_v2][lines v2][lines v1]`). Encoding once at append means outputs send stored
bytes as they are, and `report` parses them back. `cursors/<output>`
holds the next sequence number that output must deliver; it is replaced atomically, so a
killed agent resumes from it and at worst re-sends what was delivered since it was last
written (outputs write it about once a second while busy; idempotent in InfluxDB: same
series and timestamp overwrite).

A torn record at the end of the newest segment (power loss, kill -9 mid-write) is detected
by length or checksum, cut off and counted. Size is bounded: past `max_bytes` the oldest
segments go, and the points in them that some output had not delivered yet are counted as
dropped. Delivered segments stay for `retention_s` as the embedded store that `report` reads.

Thread-safety: one lock guards the index; append and read may come from different threads.

The record format is in spool_format.py. The rest stays one class in one file (~470
lines): recovery, appends, size bound, cursors and reads all work on the same index
(segments, records held in memory, cursors) under the same lock.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import logging
import os
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.lineproto import parse_lines
from agent.points import Point
from agent.spool_format import (
    HEADER,
    HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    RecordRef,
    Segment,
    SpoolRecord,
    cached_bytes,
    decode_payload,
    encode_payload,
    seq_of,
    write_all,
)

log = logging.getLogger(__name__)


@dataclass
class SpoolStats:
    appended_records: int = 0
    appended_points: int = 0
    torn_records: int = 0
    corrupt_records: int = 0
    records_read_from_disk: int = 0  # by outputs: not (or no longer) held in memory
    dropped_points: int = 0
    dropped_segments: int = 0
    expired_segments: int = 0



class Spool:
    def __init__(
        self,
        data_dir: Path,
        max_bytes: int = 1 << 30,
        retention_s: float = 7 * 86400.0,
        fsync: str = "batch",
        fsync_interval_s: float = 1.0,
        segment_max_bytes: int | None = None,
        read_only: bool = False,
        memory_max_bytes: int = 64 << 20,
    ) -> None:
        self.dir = Path(data_dir) / "spool"
        self.cursor_dir = Path(data_dir) / "cursors"
        self.max_bytes = max_bytes
        self.retention_s = retention_s
        self.fsync_policy = fsync
        self.fsync_interval_s = fsync_interval_s
        self.segment_max_bytes = segment_max_bytes or max(8 << 10, min(32 << 20, max_bytes // 8))
        self.read_only = read_only
        self.stats = SpoolStats()
        self._lock = threading.Lock()  # the index: segments, records, cursors, cache
        self._append_lock = threading.Lock()  # one writer of the active segment at a time
        self._cursor_file_lock = threading.Lock()  # one writer of cursor files at a time
        self._segments: list[Segment] = []
        self._next_seq = 0
        self._active_fd: int | None = None
        self._last_fsync_s = 0.0
        self._cache: OrderedDict[int, SpoolRecord] = OrderedDict()
        self._cache_bytes = 0
        self._cache_max_bytes = memory_max_bytes
        self._cursors: dict[str, int] = {}
        self._persisted: dict[str, int] = {}
        if not read_only:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o750)
            self.cursor_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self._load()

    # ------------------------------------------------------------ recovery

    def _load(self) -> None:
        if not self.dir.is_dir():
            return
        files = sorted(
            (int(p.stem), p) for p in self.dir.glob("*.seg") if p.stem.isdigit()
        )
        for index, (first_seq, path) in enumerate(files):
            segment = self._scan(first_seq, path, is_last=index == len(files) - 1)
            self._segments.append(segment)
            if segment.records:
                self._next_seq = max(self._next_seq, segment.records[-1].seq + 1)
            else:
                self._next_seq = max(self._next_seq, first_seq)
        for path in self.cursor_dir.glob("*.cursor") if self.cursor_dir.is_dir() else []:
            try:
                self._cursors[path.stem] = int(path.read_text().strip())
            except (OSError, ValueError):
                log.warning("spool: unreadable cursor %s, restarting it at the oldest record", path)

    def _scan(self, first_seq: int, path: Path, is_last: bool) -> Segment:
        data = path.read_bytes()
        segment = Segment(first_seq, path, mtime_s=path.stat().st_mtime)
        offset = 0
        while offset < len(data):
            if len(data) - offset < HEADER_BYTES:
                self._cut(segment, data, offset, is_last, "torn header")
                break
            length, crc, seq, n_points, first_ns = HEADER.unpack_from(data, offset)
            start = offset + HEADER_BYTES
            end = start + length
            if length > MAX_PAYLOAD_BYTES or end > len(data):
                self._cut(segment, data, offset, is_last, "torn record")
                break
            if zlib.crc32(data[start:end]) != crc:
                self._cut(segment, data, offset, is_last, "checksum mismatch")
                break
            segment.records.append(
                RecordRef(seq, first_seq, start, length, n_points, first_ns, crc)
            )
            offset = end
        segment.size_bytes = offset
        return segment

    def _cut(self, segment: Segment, data: bytes, offset: int, is_last: bool, why: str) -> None:
        if is_last:
            self.stats.torn_records += 1
        else:
            self.stats.corrupt_records += 1
        log.warning(
            "spool: %s in %s at byte %d: %d bytes skipped",
            why, segment.path.name, offset, len(data) - offset,
        )
        if not self.read_only:
            with open(segment.path, "r+b") as handle:
                handle.truncate(offset)
                os.fsync(handle.fileno())

    # ------------------------------------------------------------ writing

    def append(self, record: SpoolRecord) -> int:
        """Append one batch durably (per fsync policy); returns its sequence number."""
        if self.read_only:
            raise RuntimeError("spool opened read-only")
        parts = encode_payload(record)
        payload_bytes = sum(len(part) for part in parts)
        crc = 0
        for part in parts:
            crc = zlib.crc32(part, crc)
        with self._append_lock:
            with self._lock:
                seq = self._next_seq
                segment = self._active_segment(payload_bytes)
                fd = self._active_fd
                offset = segment.size_bytes + HEADER_BYTES
            assert fd is not None
            # The write and its fsync (milliseconds) hold only the append lock: outputs keep
            # reading, advancing and persisting cursors meanwhile. Readers cannot see the
            # record before the index below names it.
            header = HEADER.pack(payload_bytes, crc, seq, record.n_points, record.first_time_ns)
            try:
                write_all(fd, [header, *parts])
            except OSError:
                # A full disk: leave no half record for the next one to follow.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, offset - HEADER_BYTES)
                raise
            now = time.time()
            due = now - self._last_fsync_s >= self.fsync_interval_s
            if self.fsync_policy == "batch" or (self.fsync_policy == "interval" and due):
                os.fsync(fd)
                self._last_fsync_s = now
            with self._lock:
                self._index_appended(segment, RecordRef(
                    seq, segment.first_seq, offset, payload_bytes,
                    record.n_points, record.first_time_ns, crc,
                ), record, now)
        return seq

    def _index_appended(self, segment: Segment, ref: RecordRef, record: SpoolRecord,
                        now: float) -> None:
        """Under the index lock, once the record is written."""
        segment.records.append(ref)
        segment.size_bytes += HEADER_BYTES + ref.length
        segment.mtime_s = now
        self._next_seq = ref.seq + 1
        self.stats.appended_records += 1
        self.stats.appended_points += record.n_points
        self._remember(ref.seq, record)
        self._enforce_size()

    def _active_segment(self, payload_bytes: int) -> Segment:
        active = self._segments[-1] if self._segments else None
        if (
            active is None
            or self._active_fd is None
            or (
                active.size_bytes + payload_bytes + HEADER_BYTES > self.segment_max_bytes
                and active.records
            )
        ):
            if self._active_fd is not None:
                os.fsync(self._active_fd)
                os.close(self._active_fd)
                self._active_fd = None
            if active is None or active.records or active.size_bytes:
                active = Segment(self._next_seq, self.dir / f"{self._next_seq:020d}.seg")
                self._segments.append(active)
            self._active_fd = os.open(
                active.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640
            )
        return active

    def _remember(self, seq: int, record: SpoolRecord) -> None:
        """Records some output has yet to read stay in memory, so an output that keeps up
        never reads the disk; `advance` drops them once every output has them. When the
        budget is spent, what the leading output has already taken goes first (only a
        lagging output still needs it, and reads it from disk); after that a new record is
        not kept: the oldest are the ones the outputs read next."""
        if seq < self._undelivered_from():
            return  # no output will read it (none configured)
        size_bytes = cached_bytes(record)
        lead = max(self._cursors.values(), default=self._next_seq)
        while self._cache and self._cache_bytes + size_bytes > self._cache_max_bytes:
            oldest = next(iter(self._cache))
            if oldest >= lead:
                break
            self._forget(oldest)
        if self._cache_bytes + size_bytes <= self._cache_max_bytes or not self._cache:
            self._cache[seq] = record
            self._cache_bytes += size_bytes

    def _forget(self, seq: int) -> None:
        cached = self._cache.pop(seq, None)
        if cached is not None:
            self._cache_bytes -= cached_bytes(cached)

    def _forget_delivered(self) -> None:
        floor = self._undelivered_from()
        while self._cache:
            oldest = next(iter(self._cache))
            if oldest >= floor:
                break
            self._forget(oldest)

    def _undelivered_from(self) -> int:
        """Lowest sequence number some output still needs."""
        return min(self._cursors.values(), default=self._next_seq)

    def _enforce_size(self) -> None:
        while self.total_bytes > self.max_bytes and len(self._segments) > 1:
            oldest = self._segments.pop(0)
            floor = self._undelivered_from()
            lost = sum(r.n_points for r in oldest.records if r.seq >= floor)
            self._delete_segment(oldest)
            self.stats.dropped_segments += 1
            if lost:
                self.stats.dropped_points += lost
                log.warning(
                    "spool: full (%d bytes max): dropped segment %s with %d undelivered points",
                    self.max_bytes, oldest.path.name, lost,
                )
            new_floor = self._segments[0].first_seq
            for name, cursor in self._cursors.items():
                if cursor < new_floor:
                    self._cursors[name] = new_floor

    def _delete_segment(self, segment: Segment) -> None:
        for ref in segment.records:
            self._forget(ref.seq)
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()

    def expire(self, now_s: float | None = None) -> int:
        """Delete delivered segments older than retention; returns how many went."""
        now_s = time.time() if now_s is None else now_s
        removed = 0
        with self._lock:
            floor = self._undelivered_from()
            while len(self._segments) > 1:
                oldest = self._segments[0]
                delivered = not oldest.records or oldest.records[-1].seq < floor
                if not delivered or now_s - oldest.mtime_s < self.retention_s:
                    break
                self._segments.pop(0)
                self._delete_segment(oldest)
                self.stats.expired_segments += 1
                removed += 1
        return removed

    def sync(self) -> None:
        with self._append_lock:
            if self._active_fd is not None:
                os.fsync(self._active_fd)

    def close(self) -> None:
        with self._append_lock, self._lock:
            if self._active_fd is not None:
                os.fsync(self._active_fd)
                os.close(self._active_fd)
                self._active_fd = None

    # ------------------------------------------------------------ cursors

    def register_output(self, name: str) -> None:
        """A new output starts at the oldest record still held (it catches up)."""
        with self._cursor_file_lock:
            with self._lock:
                if name in self._cursors:
                    return
                start = self._segments[0].first_seq if self._segments else self._next_seq
                self._cursors[name] = start
            self._write_cursor(name, start)

    def cursor(self, name: str) -> int:
        with self._lock:
            return self._cursors.get(name, self._next_seq)

    def commit(self, name: str, next_seq: int) -> None:
        self.advance(name, next_seq)
        self.persist_cursor(name)

    def advance(self, name: str, next_seq: int) -> None:
        """Move the cursor in memory (what `read_from`/`lag` see); persist it separately.
        Never backwards: a full spool may have moved it past a batch that was in flight."""
        with self._lock:
            self._cursors[name] = max(next_seq, self._cursors.get(name, 0))
            self._forget_delivered()

    def persist_cursor(self, name: str) -> None:
        """Write the cursor's current value; a crash before it re-sends at most what was
        delivered since, which InfluxDB overwrites (same series, same timestamps)."""
        with self._cursor_file_lock:
            with self._lock:
                value = self._cursors.get(name)
            if value is None or self._persisted.get(name) == value:
                return
            self._write_cursor(name, value)

    def _write_cursor(self, name: str, value: int) -> None:
        """Under the cursor file lock only: the fsync must not stop appends and reads."""
        path = self.cursor_dir / f"{name}.cursor"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(value))
        if self.fsync_policy != "never":
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        self._persisted[name] = value

    def lag(self, name: str) -> tuple[int, int]:
        """(records, points) appended but not yet delivered by this output."""
        with self._lock:
            cursor = self._cursors.get(name, self._next_seq)
            records = points = 0
            for segment in reversed(self._segments):
                for ref in reversed(segment.records):
                    if ref.seq < cursor:
                        return records, points
                    records += 1
                    points += ref.n_points
            return records, points

    # ------------------------------------------------------------ reading

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def memory_bytes(self) -> int:
        """Undelivered records held in memory for the outputs."""
        return self._cache_bytes

    @property
    def total_bytes(self) -> int:
        return sum(s.size_bytes for s in self._segments)

    def _refs_from(self, seq: int) -> Iterator[RecordRef]:
        """Under the index lock. Found by bisection and read lazily: after an outage an
        output reads a spool of a million records a batch at a time."""
        for segment in self._segments:
            records = segment.records
            if not records or records[-1].seq < seq:
                continue
            start = bisect.bisect_left(records, seq, key=seq_of)
            yield from itertools.islice(records, start, None)

    def read_from(self, seq: int, max_points: int) -> list[tuple[int, SpoolRecord]]:
        """Records from `seq` on, whole records, until at least max_points are gathered.
        Those not in memory are read from disk after the index lock is released; one whose
        segment went meanwhile (spool full: counted as dropped) is left out."""
        with self._lock:
            picked: list[tuple[RecordRef, SpoolRecord | None]] = []
            total = 0
            for ref in self._refs_from(seq):
                if total >= max_points:
                    break
                record = self._cache.get(ref.seq)
                if record is None:
                    self.stats.records_read_from_disk += 1
                picked.append((ref, record))
                total += ref.n_points
        out: list[tuple[int, SpoolRecord]] = []
        for ref, cached in picked:
            record = cached if cached is not None else self._read_ref(ref)
            if record is not None:
                out.append((ref.seq, record))
        return out

    def _read_ref(self, ref: RecordRef) -> SpoolRecord | None:
        """From disk (the page cache, mostly): the usual payload, `[0][lines]`, is read
        straight into the lines' bytes, so a megabyte batch is not copied again."""
        path = self.dir / f"{ref.segment:020d}.seg"
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None  # expired or dropped meanwhile (a reader of a live spool)
        try:
            kind = os.pread(fd, 1, ref.offset)
            rest = os.pread(fd, ref.length - 1, ref.offset + 1) if ref.length > 1 else b""
        finally:
            os.close(fd)
        if len(kind) + len(rest) != ref.length or zlib.crc32(rest, zlib.crc32(kind)) != ref.crc:
            self.stats.corrupt_records += 1
            log.warning("spool: record %d unreadable, skipped", ref.seq)
            return None
        if kind == b"\x00":
            return SpoolRecord(rest, None, ref.n_points, ref.first_time_ns)
        return decode_payload(kind + rest, ref.n_points, ref.first_time_ns)

    def iter_points(self, since_ns: int = 0) -> Iterator[Point]:
        """Every held point at or after since_ns, in spool order (the embedded store)."""
        since_s = since_ns / 1e9
        with self._lock:
            # A segment last written before `since` cannot hold a newer point.
            refs = [r for s in self._segments if s.mtime_s >= since_s for r in s.records]
        for ref in refs:
            record = self._read_ref(ref)
            if record is None:
                continue
            for point in parse_lines(record.lines_v2):
                if point.time_ns >= since_ns:
                    yield point
