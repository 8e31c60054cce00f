"""What the benchmarks share: which line-protocol encoder they measure.

agent/points.py encodes with the C accelerator `agent._lineproto` (agent/_lineproto.c,
built by setup.py) when it imports, else with its pure-Python encoder, about 5x slower,
without a word. The benchmarks import this checkout's `agent/`, not an installed copy,
so a checkout where the extension was never built in place measured the fallback.

    parser = argparse.ArgumentParser()
    add_encoder_option(parser)
    args = parser.parse_args()
    encoder = require_encoder(args.allow_python_encoder)  # before importing agent.points
    ...
    print(json.dumps({..., "encoder": encoder}))

`require_encoder` builds the extension in place when it is missing
(`python setup.py build_ext --inplace`, this interpreter) and exits with code 2 and one
error line when the C encoder still cannot be used, unless the Python one is allowed.
Set EGRESS_AGENT_PURE_PYTHON=1 and pass --allow-python-encoder to measure the Python one
on purpose.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = "agent._lineproto"
BUILD_TIMEOUT_S = 600


def add_encoder_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-python-encoder", action="store_true",
        help=f"measure the pure-Python encoder when the C one ({EXTENSION}) cannot be "
             "imported or built (default: exit 2)")


def _import_error() -> str | None:
    """None if the C extension imports, else why not."""
    importlib.invalidate_caches()  # see a file built since the last attempt
    try:
        importlib.import_module(EXTENSION)
    except ImportError as exc:
        return str(exc)
    return None


def _build_in_place() -> str | None:
    """Build the extension next to its source; None if that looked fine, else the most
    telling line of its output. (The Extension is optional=True: a failed compile exits
    0 with a warning, so the caller imports again to know.)"""
    argv = [sys.executable, "setup.py", "build_ext", "--inplace"]
    print(f"bench: {EXTENSION} is not built; running {' '.join(argv)} in {ROOT}",
          file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    lines = [line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    failed = [line for line in lines if "failed" in line]
    if proc.returncode == 0 and not failed:
        return None
    causes = [line for line in lines if "error:" in line]  # the compiler's first complaint
    return (causes[:1] or failed[-1:] or lines[-1:] or [f"exit {proc.returncode}"])[0]


def require_encoder(allow_python: bool) -> str:
    """"c" or "python": the encoder agent.points uses from now on. Builds the C one in
    place if it is missing; exits 2 (one line on stderr) if it is still not in use and
    `allow_python` is false. Call before anything imports agent.points."""
    problem = None
    if os.environ.get("EGRESS_AGENT_PURE_PYTHON"):
        problem = "EGRESS_AGENT_PURE_PYTHON is set, so agent.points uses the Python encoder"
    elif (error := _import_error()) is not None:
        build_error = _build_in_place()
        if (after := _import_error()) is not None:
            problem = (f"{EXTENSION} does not import ({after}) and `python setup.py "
                       f"build_ext --inplace` did not build it"
                       + (f" ({build_error})" if build_error else f" (before: {error})"))

    import agent.points

    encoder = "c" if agent.points._lineproto is not None else "python"
    if encoder == "python" and problem is None:
        problem = ("agent.points was imported before the C encoder was built; run the "
                   "benchmark again")
    if encoder == "python" and not allow_python:
        print(f"bench: not measuring the pure-Python encoder: {problem}; pass "
              "--allow-python-encoder to measure it anyway", file=sys.stderr)
        raise SystemExit(2)
    detail = (getattr(agent.points._lineproto, "__file__", EXTENSION) if encoder == "c"
              else problem)
    print(f"bench: encoder {encoder} ({detail})", file=sys.stderr, flush=True)
    return encoder
