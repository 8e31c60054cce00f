"""Exit codes and the usage error of every `egress-agent` command (docs/cli.md), the core's
and those contributed by collector packages alike: 0 ok, 1 runtime failure (or, for
`probe`/`traceroute`, nothing answered), 2 usage or config error."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A bad argument or config given to a command: one `error:` line on stderr, exit 2."""
