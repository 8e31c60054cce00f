"""Starts the ExaBGP of the agent's own environment with less memory than its script.

Run as `PYTHON -I -S exabgp_launch.py SITE_PACKAGES EXABGP_SCRIPT ARGS...` (see
`exabgp.command_line`). Against the `exabgp` script, 30.2 → 25.5 MB of RSS at start:
- `-S`: no `site` (the venv's path hooks and editable-install finders); the one directory
  ExaBGP is imported from is added by hand;
- no TLS: asyncio imports `ssl` (libssl and libcrypto, about 5 MB) only to offer it, and
  BGP runs over plain TCP (ExaBGP's MD5 is a socket option). Blocking the import makes
  asyncio run without TLS, as it does on a Python built without it.
`sys.argv[0]` is set to the script's path, since ExaBGP finds its root from it.
Standard library only, like bridge.py.
"""

import sys


def main() -> None:
    if len(sys.argv) < 3:
        sys.stderr.write("usage: exabgp_launch.py SITE_PACKAGES EXABGP_SCRIPT [ARGS...]\n")
        raise SystemExit(2)
    sys.modules["ssl"] = None  # type: ignore[assignment]
    sys.path.append(sys.argv[1])
    sys.argv = sys.argv[2:]
    from exabgp.application.main import main as exabgp_main

    raise SystemExit(exabgp_main())


if __name__ == "__main__":
    main()
