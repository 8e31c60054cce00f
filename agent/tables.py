"""Column-aligned text tables for the command line (probe, traceroute, status, alerts).

tabulate lays them out (its `plain` format: columns two spaces apart, no rules). It is
imported inside `table()`, so only a command that prints a table pays for it: the daemon,
which runs through the same CLI module, never loads it.
"""

from __future__ import annotations

from collections.abc import Sequence


def table(rows: Sequence[Sequence[str]], headers: Sequence[str] = (),
          align: Sequence[str] = (), indent: str = "") -> list[str]:
    """The lines of a table of strings (`align`: "left"/"right" per column, left by
    default), each prefixed with `indent` and without trailing spaces."""
    if not rows and not headers:
        return []
    from tabulate import tabulate

    body = [list(headers)] if headers else []  # a first row: aligned like its column
    body.extend(list(row) for row in rows)
    width = max(len(row) for row in body)
    text = tabulate(
        body,
        tablefmt="plain",
        colalign=tuple(align) + ("left",) * (width - len(align)),
        disable_numparse=True,
        missingval="",
    )
    return [(indent + line).rstrip() for line in text.splitlines()]
