"""tests/lab/wait.py: the lab's one wait loop (no root, no lab; well under a second each)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.lab.wait import NotYet, WaitTimeout, wait_until


def test_returns_the_first_truthy_value_at_once() -> None:
    calls: list[float] = []

    def ready(left: float) -> dict[str, str]:
        calls.append(left)
        return {"state": "up"}

    assert wait_until(ready, 5.0, "x") == {"state": "up"}
    assert len(calls) == 1
    assert 4.9 < calls[0] <= 5.0


def test_retries_through_transient_errors_and_falsy_values() -> None:
    outcomes: list[object] = [
        subprocess.TimeoutExpired(["birdc", "show", "status"], 10),
        ConnectionRefusedError(111, "Connection refused"),
        NotYet("Unable to connect to server control socket"),
        OSError("HTTP read timed out"),
        0,
        [],
        "Daemon is up and running",
    ]

    def attempt(_left: float) -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert wait_until(attempt, 5.0, "birdc", interval_s=0.001) == "Daemon is up and running"
    assert outcomes == []


def test_deadline_raises_with_what_how_long_and_the_last_error() -> None:
    seen = iter(range(1_000_000))

    def attempt(_left: float) -> bool:
        raise NotYet(f"attempt {next(seen)}: Unable to connect")

    started = time.monotonic()
    with pytest.raises(WaitTimeout) as info:
        wait_until(attempt, 0.3, "bird in ns-x to answer `show status`", interval_s=0.01)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 1.3  # generous: a shared machine may be busy
    error = info.value
    assert isinstance(error, TimeoutError)
    message = str(error)
    assert "bird in ns-x to answer `show status`" in message
    assert "0.3 s" in message
    assert f"last seen: attempt {error.attempts - 1}: Unable to connect" in message
    assert error.attempts >= 5
    assert isinstance(error.last, NotYet)
    assert error.__cause__ is error.last


def test_deadline_reports_the_last_exception_type_and_falsy_value() -> None:
    def refused(_left: float) -> bool:
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(WaitTimeout, match=r"last seen: ConnectionRefusedError: .*refused"):
        wait_until(refused, 0.05, "server", interval_s=0.01)

    with pytest.raises(WaitTimeout, match=r"last seen: \['ix_unicom'\]") as info:
        wait_until(lambda _left: Pending(["ix_unicom"]), 0.05, "sessions", interval_s=0.01)
    assert info.value.__cause__ is None


class Pending(list[str]):
    """A falsy result that still says what it saw (what is pending)."""

    def __bool__(self) -> bool:
        return False


def test_other_exceptions_pass_through_at_once() -> None:
    calls = 0

    def broken(_left: float) -> bool:
        nonlocal calls
        calls += 1
        raise RuntimeError("bird exited: syntax error")

    with pytest.raises(RuntimeError, match="bird exited"):
        wait_until(broken, 5.0, "bird")
    assert calls == 1


def test_transient_is_configurable() -> None:
    outcomes: list[BaseException | None] = [KeyError("not yet there"), None]

    def attempt(_left: float) -> bool:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return True

    assert wait_until(attempt, 5.0, "x", interval_s=0.001, transient=(KeyError,)) is True
    with pytest.raises(KeyError):
        wait_until(lambda _left: {}["missing"], 5.0, "x")


def test_each_attempt_gets_the_time_left_and_a_slow_attempt_cannot_overrun() -> None:
    """An attempt that uses all the time it is given (a subprocess with timeout=left)
    ends at the deadline, not a whole per-attempt timeout after it."""
    lefts: list[float] = []
    command = [sys.executable, "-c", "import time; time.sleep(30)"]

    def slow(left: float) -> bool:
        lefts.append(left)
        subprocess.run(command, timeout=min(10.0, left), check=False)
        return True

    started = time.monotonic()
    with pytest.raises(WaitTimeout, match="TimeoutExpired") as info:
        wait_until(slow, 0.5, "a slow command")
    elapsed = time.monotonic() - started
    assert elapsed < 1.5  # a 10 s per-attempt timeout would have taken 10 s
    assert lefts and all(0 <= left <= 0.5 for left in lefts)
    assert lefts == sorted(lefts, reverse=True)
    assert isinstance(info.value.last, subprocess.TimeoutExpired)


def test_time_left_shrinks_between_attempts_and_sleeps_stop_at_the_deadline() -> None:
    lefts: list[float] = []

    def attempt(left: float) -> bool:
        lefts.append(left)
        return False

    started = time.monotonic()
    with pytest.raises(WaitTimeout):
        wait_until(attempt, 0.25, "x", interval_s=0.1)
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.25
    assert 1 <= len(lefts) <= 3  # at 0, 0.1 and 0.2 s; none after the (cut) last sleep
    assert lefts == sorted(lefts, reverse=True)
    assert 0.2 < lefts[0] <= 0.25


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        wait_until(lambda _left: True, 0, "x")
