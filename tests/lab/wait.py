"""The one way the lab waits: retry until a deadline, then one clear error.

    states = wait_until(lambda left: ..., timeout_s=20, what="carrier sessions Established")

`predicate(left)` gets the seconds left before the deadline: use it as (or to cap) the
timeout of whatever one attempt runs, so that no attempt outlives the wait. A truthy
return ends the wait and is returned. "Not yet" is any of:
- a falsy return;
- `NotYet(detail)` raised, the detail saying what it saw (e.g. birdc's output);
- one of `transient` raised: by default `subprocess.TimeoutExpired` (one attempt ran out
  of time, e.g. birdc while BIRD is busy loading a table) and `OSError` (connection
  refused or reset, URL errors and socket timeouts while a server starts).
Then it sleeps `interval_s` (never past the deadline) and tries again. Any other
exception is a real failure (a process that exited, a syntax error) and passes through
at once. At the deadline it raises `WaitTimeout`: what it waited for, for how long, how
many attempts, and the last thing it saw (the last detail, exception or value).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

TRANSIENT: tuple[type[BaseException], ...] = (subprocess.TimeoutExpired, OSError)
_LAST_SEEN_CHARS = 2000


class NotYet(Exception):
    """Raised by a predicate: not done yet; the message is what it saw."""


class WaitTimeout(TimeoutError):
    """The deadline passed. `last` is the last thing seen: the exception an attempt
    raised (also the `__cause__`), or the falsy value it returned."""

    def __init__(self, what: str, timeout_s: float, attempts: int, last: object) -> None:
        self.what = what
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.last = last
        super().__init__(f"timed out after {timeout_s:g} s waiting for {what} "
                         f"({attempts} attempt{'s' if attempts != 1 else ''}); "
                         f"last seen: {describe(last)}")


def describe(last: object) -> str:
    if isinstance(last, NotYet):
        text = str(last)
    elif isinstance(last, BaseException):
        text = f"{type(last).__name__}: {last}"
    else:
        text = repr(last)
    text = text.strip() or "(nothing)"
    if len(text) > _LAST_SEEN_CHARS:
        text = "..." + text[-_LAST_SEEN_CHARS:]
    return text


def wait_until(predicate: Callable[[float], T], timeout_s: float, what: str,
               interval_s: float = 0.05,
               transient: tuple[type[BaseException], ...] = TRANSIENT) -> T:
    """Call `predicate(seconds_left)` until it returns a truthy value (returned), at
    least once, for at most `timeout_s`; see the module docstring."""
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    deadline = time.monotonic() + timeout_s
    attempts = 0
    last: object = None
    while True:
        left = deadline - time.monotonic()
        if attempts and left <= 0:
            raise WaitTimeout(what, timeout_s, attempts, last) from (
                last if isinstance(last, BaseException) else None)
        attempts += 1
        try:
            value = predicate(max(left, 0.0))
        except NotYet as exc:
            last = exc
        except transient as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        pause = min(interval_s, deadline - time.monotonic())
        if pause > 0:
            time.sleep(pause)
