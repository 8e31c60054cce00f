"""Starts ExaBGP with less memory than its console script.

Run as `PYTHON -I [-S] exabgp_launch.py SITE_PACKAGES EXABGP_SCRIPT ARGS...` (see
`exabgp.launch_prefix`), SITE_PACKAGES empty when `site` runs. It imports ExaBGP's
`application.main` itself (4.2 and 5.x both have it), where the script would first look
its entry point up through `importlib.metadata` (email, zipfile, csv, ... 6.4 MB, measured
with Debian's 4.2). For the ExaBGP of the agent's venv, 30.2 → 25.5 MB of RSS at start:
- `-S`: no `site` (the venv's path hooks and editable-install finders); the one directory
  ExaBGP is imported from is added by hand;
- no TLS: asyncio imports `ssl` (libssl and libcrypto, about 5 MB) only to offer it, and
  BGP runs over plain TCP (ExaBGP's MD5 is a socket option). Blocking the import makes
  asyncio run without TLS, as it does on a Python built without it.
`sys.argv[0]` is set to the script's path, since ExaBGP finds its root from it. If ExaBGP
cannot be imported this way, the script is run as it is. Standard library only, like
bridge.py.
"""

import os
import sys


def main() -> None:
    if len(sys.argv) < 3:
        sys.stderr.write("usage: exabgp_launch.py SITE_PACKAGES EXABGP_SCRIPT [ARGS...]\n")
        raise SystemExit(2)
    if sys.argv[1]:
        sys.path.append(sys.argv[1])
    sys.argv = sys.argv[2:]
    sys.modules["ssl"] = None  # type: ignore[assignment]
    try:
        from exabgp.application.main import main as exabgp_main
    except ImportError as exc:
        sys.stderr.write(f"exabgp_launch.py: {exc}; running {sys.argv[0]} as it is\n")
        os.execv(sys.argv[0], sys.argv)  # noqa: S606 (the agent's own command line, no shell)
    raise SystemExit(exabgp_main())


if __name__ == "__main__":
    main()
