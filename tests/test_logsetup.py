"""Logging: one line per event, levels, JSON, and no secret ever reaching the output."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.logsetup import clear_secrets, configure_logging, redact, register_secret

TOKEN = "tKn-9f8e7d6c5b4a-SECRET"
PASSWORD = "hunter2-Pa55w0rd"


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)
    clear_secrets()


def configured(fmt: str = "text", level: str = "info") -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level, fmt, stream=stream)
    return stream


def log_secrets_every_way(log: logging.Logger) -> None:
    log.info("influx write with token %s", TOKEN)
    log.warning("request headers %s", {"Authorization": f"Token {TOKEN}"})
    log.error("GET http://127.0.0.1:8086/query?u=bob&p=%s&db=egress failed", PASSWORD)
    log.error("POST https://bob:%s@influx.example/write refused", PASSWORD)
    log.info("retrying http://127.0.0.1:8086/api/v2/write?token=%s&org=ops", TOKEN)
    log.info("loaded password=%s and secret: %s", PASSWORD, TOKEN)
    log.info('config {"token": "%s", "password": "%s"}', TOKEN, PASSWORD)
    try:
        raise ConnectionError(f"401 Unauthorized: Authorization: Bearer {TOKEN}")
    except ConnectionError:
        log.exception("write failed (password=%s)", PASSWORD)
    try:
        try:
            raise ValueError(f"token={TOKEN}")
        except ValueError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError:
        log.error("chained", exc_info=True)
    log.info("stack", stack_info=True)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_secret_in_output(fmt: str) -> None:
    stream = configured(fmt)
    log_secrets_every_way(logging.getLogger("agent.outputs.influxdb"))
    log_secrets_every_way(logging.getLogger("urllib3.connectionpool"))  # not our logger
    out = stream.getvalue()
    assert TOKEN not in out
    assert PASSWORD not in out
    assert "tKn-" not in out
    assert out.count("***") >= 20
    # the surrounding facts survive: what failed, where, which user
    assert "influx.example/write refused" in out
    assert "u=bob" in out
    assert "Token ***" in out
    assert "ConnectionError" in out
    assert "The above exception was the direct cause" in out  # redaction ate no text


def test_registered_secret_is_redacted_anywhere() -> None:
    stream = configured()
    opaque = "Zq81mLkP0aa"

    class Client:
        def __repr__(self) -> str:
            return f"Client(key<{opaque}>)"

    register_secret(opaque + "\n")  # as read from a token file
    logging.getLogger("x").info("client %r ready; raw=%s", Client(), opaque)
    assert opaque not in stream.getvalue()
    assert "Client(key<***>)" in stream.getvalue()


def test_one_line_per_event_text() -> None:
    stream = configured()
    log = logging.getLogger("agent.scheduler")
    log.info("interface name with\nnewline")
    try:
        {}["missing"]
    except KeyError:
        log.exception("collector %s raised", "links")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith("INFO agent.scheduler: interface name with\\nnewline")
    assert "ERROR agent.scheduler: collector links raised | Traceback" in lines[1]
    assert "KeyError: 'missing'" in lines[1]


def test_json_lines() -> None:
    stream = configured("json", "debug")
    log = logging.getLogger("agent.daemon")
    log.debug("tick", extra={"queue_points": 12, "note": f"password={PASSWORD}"})
    try:
        raise OSError("boom")
    except OSError:
        log.exception("spool write failed\nsecond line")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "debug"
    assert first["logger"] == "agent.daemon"
    assert first["message"] == "tick"
    assert first["queue_points"] == 12
    assert first["note"] == "password=***"
    assert first["time"].endswith("Z")
    assert second["level"] == "error"
    assert second["message"] == "spool write failed\nsecond line"
    assert "OSError: boom" in second["exception"]


def test_levels_and_reconfigure() -> None:
    stream = configured(level="warning")
    log = logging.getLogger("agent.x")
    log.info("hidden")
    log.warning("shown")
    assert "hidden" not in stream.getvalue()
    assert "WARNING agent.x: shown" in stream.getvalue()
    second = configured(level="debug")  # SIGHUP with a new level: replaces, never doubles
    log.debug("now visible")
    assert second.getvalue().count("now visible") == 1
    assert "now visible" not in stream.getvalue()
    ours = [h for h in logging.getLogger().handlers if type(h).__name__ == "_StderrHandler"]
    assert len(ours) == 1


def test_bad_level_or_format() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("loud", "text")
    with pytest.raises(ValueError, match="unknown log format"):
        configure_logging("info", "xml")


def test_warnings_are_logged_redacted() -> None:
    stream = configured()
    warnings.warn(f"deprecated token={TOKEN}", DeprecationWarning, stacklevel=1)
    out = stream.getvalue()
    assert "py.warnings" in out
    assert TOKEN not in out


def test_journal_priority_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open(tmp_path / "journal", "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        configure_logging("info", "text", stream=stream)
        logging.getLogger("agent").error("e")
        logging.getLogger("agent").info("i")
    lines = (tmp_path / "journal").read_text().splitlines()
    assert lines == ["<3>ERROR agent: e", "<6>INFO agent: i"]


def test_redact_leaves_ordinary_text() -> None:
    for text in (
        "token_file=/etc/egress-agent/influxdb.token",
        "the token expired; reloading",
        "link eth1 up, 10000 Mb/s",
        "",
    ):
        assert redact(text) == text


def test_real_stderr_of_a_process(tmp_path: Path) -> None:
    """What actually reaches file descriptor 2 of a process configured this way."""
    script = (
        "import logging, sys\n"
        "from agent.logsetup import configure_logging\n"
        "configure_logging('info', sys.argv[1])\n"
        f"logging.getLogger('agent').error('Authorization: Token {TOKEN}')\n"
        f"raise SystemExit(logging.getLogger('agent').info('url https://u:{PASSWORD}@h/'))\n"
    )
    for fmt in ("text", "json"):
        result = subprocess.run(
            [sys.executable, "-c", script, fmt],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=Path(__file__).resolve().parent.parent,
            env={k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"},
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 2, lines
        assert TOKEN not in result.stderr
        assert PASSWORD not in result.stderr


def test_default_stream_follows_sys_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    configure_logging("info", "text")
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logging.getLogger("a").info("one")
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("a").info("two")
    assert "one" in first.getvalue() and "two" not in first.getvalue()
    assert "two" in second.getvalue()


def test_environment_secrets_are_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUX_TOKEN", "Zx81-opaque-value")
    monkeypatch.setenv("EGRESS_DB_PASSWORD", "q9q9q9q9")
    monkeypatch.setenv("SHORT_TOKEN", "abc")  # too short to redact without damage
    stream = configured()
    logging.getLogger("a").info("env %s %s %s", "Zx81-opaque-value", "q9q9q9q9", "abc")
    out = stream.getvalue()
    assert "Zx81-opaque-value" not in out
    assert "q9q9q9q9" not in out
    assert out.rstrip().endswith("env *** *** abc")


def test_scheme_credentials_without_header_name() -> None:
    # e.g. a header whose name an HTTP library or another redactor already mangled
    assert redact("Authorization<x> Basic Ym9iOnB3LTBkOWU4YzdiNmEtU0VDUkVU") == (
        "Authorization<x> Basic ***"
    )
    assert redact("headers: Bearer abc.def") == "headers: Bearer ***"
    assert redact("basic configuration applied") == "basic configuration applied"
