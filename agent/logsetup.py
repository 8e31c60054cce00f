"""Logging: one line per event on stderr, optional JSON, secrets redacted.

journald adds time, host and unit to each line, so under systemd (stderr connected to the
journal, `$JOURNAL_STREAM`) a text line is `<priority>LEVEL logger: message` with the
syslog priority prefix journald turns into the entry's level; elsewhere it starts with a
timestamp. Tracebacks and messages with newlines are folded onto their line (newlines as
`\\n`) so that one event is one line to every reader, including line-based log shippers.

Redaction happens in a filter on our handler, so it covers every logger (ours, ExaBGP's
bridge, influxdb-client, urllib3) and every part of the record: message, arguments,
exception and stack text. Patterns catch `Authorization` headers, `token=`/`password=`
style assignments (also in JSON and dict reprs) and credentials in URLs; secret values
the agent loads (the InfluxDB token file) are registered with `register_secret` and
replaced wherever they appear, whatever the surrounding text.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, TextIO

REDACTED = "***"

LogFormat = Literal["text", "json"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# Key names whose values are secrets: token, password, secret, api key, credentials,
# with any prefix (access_token, influx-password); not `token_file` and the like.
_SECRET_KEY = r"[\w.-]*?(?:token|passw(?:or)?d|pwd|secret|api[_-]?key|credentials?|auth)"  # noqa: S105
_SCHEME_RE = re.compile(r"(?i)^\s*(bearer|token|basic|digest)\s+")


def _authorization(match: re.Match[str]) -> str:
    """Keep the header name, the quote and the scheme; hide the credentials."""
    prefix, quote, quoted, bare = match.group(1), match.group(2), match.group(3), match.group(4)
    value = quoted if quote else bare
    scheme = _SCHEME_RE.match(value)
    hidden = (scheme.group(1) + " " if scheme else "") + REDACTED
    return prefix + (quote + hidden + quote if quote else hidden)


def _quoted(match: re.Match[str]) -> str:
    quote = match.group(2)[0]
    return match.group(1) + quote + REDACTED + quote


Replacement = str | Callable[[re.Match[str]], str]
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], Replacement], ...] = (
    # Authorization: Token abc / "Authorization": "Bearer abc" / authorization=Basic abc
    (
        re.compile(
            r"(?i)(\b(?:proxy-)?authorization[\"']?\s*[:=]\s*)"
            r"(?:([\"'])((?:(?!\2).)*)\2"
            r"|((?:(?:bearer|token|basic|digest)\s+)?[^\s\"',;}&]+))"
        ),
        _authorization,
    ),
    # Quoted values: "token": "a b c", 'password': 'x', password="x y"
    (
        re.compile(
            r"(?i)(\b" + _SECRET_KEY + r"[\"']?\s*[:=]\s*)(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')"
        ),
        _quoted,
    ),
    # Bare values: token=abc, password: abc
    (
        re.compile(r"(?i)(\b" + _SECRET_KEY + r"\s*[:=]\s*)(?![\"'\s])([^\s\"',;&}\])]+)"),
        r"\1" + REDACTED,
    ),
    # Prose: "with token 9f8e7d6c5b4a", "password Hunter2!x": a long word with a digit
    (
        re.compile(
            r"(?i)\b(token|passw(?:or)?d|secret|api[_-]?key)(\s+)(?!\*\*\*)"
            r"(?=[^\s\"',;]*\d)[^\s\"',;]{8,}"
        ),
        r"\1\2" + REDACTED,
    ),
    # InfluxDB 1.x credentials as query parameters: ?u=bob&p=secret
    (re.compile(r"([?&]p=)([^&\s\"']+)"), r"\1" + REDACTED),
    # Credentials after their scheme standing alone (a header whose name was mangled, a
    # repr of request headers): Bearer anything; Basic/Digest when it looks encoded
    (re.compile(r"(?i)\b(bearer\s+)(?!\*\*\*)([A-Za-z0-9._~+/=-]+)"), r"\1" + REDACTED),
    (
        re.compile(r"\b((?:Basic|Digest)\s+)(?=[A-Za-z0-9+/=._-]*[0-9=])[A-Za-z0-9+/=._-]{8,}"),
        r"\1" + REDACTED,
    ),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)([^@/\s]+)(@)"), r"\1" + REDACTED + r"\3"),
)

_secrets_lock = threading.Lock()
_secret_values: set[str] = set()
_MIN_SECRET_LEN = 4  # shorter "secrets" would redact ordinary words and numbers


def register_secret(value: str) -> None:
    """Redact this exact value (and its surrounding whitespace-stripped form) everywhere."""
    value = value.strip()
    if len(value) >= _MIN_SECRET_LEN:
        with _secrets_lock:
            _secret_values.add(value)


_SECRET_ENV_RE = re.compile(r"(?i)(token|passw(or)?d|secret|api_?key|credential)")
_MIN_ENV_SECRET_LEN = 6


def register_environment_secrets(environ: dict[str, str] | None = None) -> None:
    """Register the values of environment variables named like secrets ($INFLUX_TOKEN,
    $*_PASSWORD, ...): the agent may read them, so they must never be logged."""
    env = os.environ if environ is None else environ
    for name, value in env.items():
        if _SECRET_ENV_RE.search(name) and len(value.strip()) >= _MIN_ENV_SECRET_LEN:
            register_secret(value)


def clear_secrets() -> None:
    with _secrets_lock:
        _secret_values.clear()


def redact(text: str) -> str:
    """Text with every secret we know how to recognise replaced by `***`."""
    if not text:
        return text
    with _secrets_lock:
        known = sorted(_secret_values, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites the record in place: message rendered and redacted, exception text
    rendered and redacted, so no later formatter can bring the secret back."""

    def __init__(self, formatter: logging.Formatter | None = None) -> None:
        super().__init__()
        self._formatter = formatter or logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception as exc:  # a bad format string must not lose the event
            message = f"{record.msg!r} (log formatting failed: {exc})"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        # The traceback is now text; drop the live objects (their frames hold secrets too).
        record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _fold(text: str) -> str:
    """One line: newlines become a visible `\\n`."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def stderr_is_journal(stream: TextIO) -> bool:
    """True when `stream` is the journal's stream socket ($JOURNAL_STREAM = dev:inode)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


def error_lines(text: str, stream: TextIO) -> str:
    """`text` as error lines for `stream`: with journald's `<3>` (err) on each line when
    the stream is the journal, so a command's one-line error is an error in the journal."""
    if not stderr_is_journal(stream):
        return text
    return "\n".join(f"<{_PRIORITY[logging.ERROR]}>{line}" for line in text.splitlines())


# syslog priorities for journald's `<N>` prefix (SyslogLevelPrefix=, on by default)
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def _priority(levelno: int) -> int:
    for level, prio in _PRIORITY.items():
        if levelno >= level:
            return prio
    return 7


class TextFormatter(logging.Formatter):
    def __init__(self, journal: bool) -> None:
        super().__init__()
        self._journal = journal

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_text:
            line += " | " + record.exc_text
        if record.stack_info:
            line += " | " + record.stack_info
        line = _fold(redact(line))
        if self._journal:
            return f"<{_priority(record.levelno)}>{line}"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z {line}"


# LogRecord attributes that are not `extra=` fields
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, exception, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_text:
            obj["exception"] = redact(record.exc_text)
        if record.stack_info:
            obj["stack"] = redact(record.stack_info)
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRS or key.startswith("_") or key in obj:
                continue
            if isinstance(value, bool | int | float) or value is None:
                obj[key] = value
            else:
                obj[key] = redact(str(value))
        return json.dumps(obj, ensure_ascii=False, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our handler (a reconfigure replaces only ours). Without an explicit stream it writes
    to whatever `sys.stderr` is at the time of each record, not the one at setup (tests and
    embedding programs swap it)."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self._follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


def configure_logging(
    level: str,
    fmt: LogFormat | str = "text",
    *,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Route every logger's records to stderr, one line per event; safe to call again
    on reload with a new level or format. Raises ValueError on an unknown level/format.
    Secrets in the environment are registered here; secrets read from files are not known
    to this module: whoever reads one calls `register_secret` with it."""
    levelno = LEVELS.get(level.lower()) if isinstance(level, str) else None
    if levelno is None:
        raise ValueError(f"unknown log level {level!r} (use {', '.join(LEVELS)})")
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r} (use text or json)")
    out = stream if stream is not None else sys.stderr
    handler = _StderrHandler(stream)
    formatter: logging.Formatter = (
        JsonFormatter() if fmt == "json" else TextFormatter(stderr_is_journal(out))
    )
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter(formatter))
    register_environment_secrets()
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(levelno)
    logging.captureWarnings(True)
    return handler
