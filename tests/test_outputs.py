"""Output error handling. The real servers cannot be made to answer 429 or 401 on demand,
so a small HTTP server on loopback plays those answers (a stand-in, and only for that);
delivery to the real servers is in test_delivery.py."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import InfluxDBConfig, InfluxDBv1Config
from agent.outputs.base import (
    OutputWorker,
    RejectedBatchError,
    RetryableWriteError,
    classify_status,
    next_backoff_s,
)
from agent.outputs.influxdb import InfluxDBOutput
from agent.outputs.influxdb_v1 import InfluxDBv1Output
from agent.spool import Spool
from agent.spool_format import SpoolRecord


class Script:
    """The answers the stand-in server gives, in order; then 204."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.times: list[float] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            script.bodies.append(self.rfile.read(length))
            script.times.append(time.monotonic())
            script.headers.append(dict(self.headers))
            status, headers = script.answers.pop(0) if script.answers else (204, {})
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            body = b'{"error":"nope"}' if status != 204 else b""
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_classify_status() -> None:
    assert classify_status(204, "", None) is None
    assert isinstance(classify_status(400, "bad line", None), RejectedBatchError)
    assert isinstance(classify_status(413, "too large", None), RejectedBatchError)
    for status in (401, 403, 429, 500, 503):
        assert isinstance(classify_status(status, "", None), RetryableWriteError)
    outcome = classify_status(429, "", "7")
    assert isinstance(outcome, RetryableWriteError) and outcome.retry_after_s == 7.0


def test_backoff_grows_and_honours_retry_after() -> None:
    delays = [next_backoff_s(a, 60.0) for a in range(10)]
    assert delays[0] < 1.0 and 40 <= delays[-1] <= 60.0
    assert next_backoff_s(0, 60.0, retry_after_s=5.0) >= 5.0
    assert next_backoff_s(0, 1.0, retry_after_s=5.0) == 5.0  # the server's word wins


def run_worker(output: InfluxDBv1Output | InfluxDBOutput, tmp_path: Path, records: int,
               until: float = 10.0) -> OutputWorker:
    async def scenario() -> OutputWorker:
        spool = Spool(tmp_path)
        worker = OutputWorker(output, spool, tmp_path)
        for i in range(records):
            spool.append(SpoolRecord(f"m v={i}i {i + 1}".encode(), None, 1, i + 1))
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + until
        while not worker.caught_up() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return worker

    return asyncio.run(scenario())


def test_429_retry_after_is_honoured_then_delivered(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    url, script = server
    script.answers = [(429, {"Retry-After": "1"})]
    output = InfluxDBv1Output(InfluxDBv1Config(url=url, database="egress",
                                               max_retry_delay_s=0.1))
    worker = run_worker(output, tmp_path, records=1)
    assert worker.caught_up()
    assert worker.stats.retries == 1 and worker.stats.points_written == 1
    assert script.times[1] - script.times[0] >= 0.95
    assert script.bodies[0] == script.bodies[1] == b"m v=0i 1"


def test_401_is_retried_not_rejected_and_secret_not_logged(
    server: tuple[str, Script], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, script = server
    script.answers = [(401, {}), (401, {})]
    token_file = tmp_path / "token"
    token_file.write_text("tok-SECRET-123\n")
    output = InfluxDBOutput(InfluxDBConfig(url=url, org="o", bucket="b", token_file=token_file,
                                           max_retry_delay_s=0.05, gzip=False))
    worker = run_worker(output, tmp_path, records=2)
    assert worker.caught_up() and worker.stats.retries == 2 and worker.stats.write_errors == 0
    assert script.headers[0]["Authorization"] == "Token tok-SECRET-123"
    assert "tok-SECRET-123" not in caplog.text
    assert "tok-SECRET-123" not in worker.stats.last_error


def test_400_moves_batch_to_rejected_and_goes_on(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    url, script = server
    script.answers = [(400, {})]
    output = InfluxDBv1Output(InfluxDBv1Config(url=url, database="egress", batch_size=1))
    worker = run_worker(output, tmp_path, records=3)
    assert worker.caught_up()
    assert worker.stats.write_errors == 1 and worker.stats.rejected_points == 1
    assert worker.stats.points_written == 2
    (rejected,) = (tmp_path / "rejected").glob("influxdb_v1-*.lp")
    assert rejected.read_text() == '# HTTP 400: {"error":"nope"}\nm v=0i 1\n'
    assert len(script.bodies) == 3  # the rejected batch was sent once, never retried


def test_server_down_keeps_batch(tmp_path: Path) -> None:
    output = InfluxDBv1Output(InfluxDBv1Config(url="http://127.0.0.1:9", database="egress",
                                               max_retry_delay_s=0.05))
    worker = run_worker(output, tmp_path, records=2, until=0.5)
    assert not worker.caught_up()
    assert worker.stats.retries >= 2 and worker.stats.points_written == 0
    assert "ConnectionRefusedError" in worker.stats.last_error


def test_a_bug_in_the_sender_loop_is_counted_and_delivery_goes_on(
    server: tuple[str, Script], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading the spool fails once (a stand-in for any bug outside `send`): the sender
    logs it, counts it, restarts, and every record still arrives once, in order."""
    import agent.outputs.base as base

    monkeypatch.setattr(base, "SENDER_RESTART_S", 0.05)
    url, script = server
    output = InfluxDBv1Output(InfluxDBv1Config(url=url, database="egress", batch_size=1))
    failures = iter([RuntimeError("disk on fire")])
    original = OutputWorker._prepare

    def flaky_prepare(self: OutputWorker, seq: int) -> object:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return original(self, seq)

    monkeypatch.setattr(OutputWorker, "_prepare", flaky_prepare)
    worker = run_worker(output, tmp_path, records=3)
    assert worker.caught_up() and worker.stats.points_written == 3
    assert "sender failed: RuntimeError: disk on fire" in worker.stats.last_error
    assert script.bodies == [b"m v=0i 1", b"m v=1i 2", b"m v=2i 3"]


def test_cursor_file_is_written_once_a_second_while_busy_and_at_once_when_idle(
    server: tuple[str, Script], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30 back-to-back sends write the cursor file a few times, not 30 (each write is an
    fsync and a rename); the delivered position is durable once the sender is idle."""
    import agent.outputs.base as base

    monkeypatch.setattr(base, "CURSOR_PERSIST_S", 60.0)
    written: list[int] = []
    original = Spool._write_cursor

    def spy(self: Spool, name: str, value: int) -> None:
        written.append(value)
        original(self, name, value)

    monkeypatch.setattr(Spool, "_write_cursor", spy)
    url, script = server
    output = InfluxDBv1Output(InfluxDBv1Config(url=url, database="egress", batch_size=1))
    worker = run_worker(output, tmp_path, records=30)
    assert worker.stats.points_written == 30 and len(script.bodies) == 30
    assert 2 <= len(written) <= 4, written  # registration, the first send, idle (and stop)
    assert written[-1] == 30
    assert Spool(tmp_path).cursor("influxdb_v1") == 30
