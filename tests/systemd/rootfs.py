"""A Debian root file system with systemd as PID 1, for the real-systemd stage.

debootstrap takes about two minutes, so the tree is built once and cached outside the
repository (`$XDG_CACHE_HOME/egress-agent-systemd/`, default `~/.cache/...`), keyed by
everything that decides its content: suite, mirror, variant and package list. A build
goes to a temporary directory renamed into place when complete, so an interrupted build
is never mistaken for a cache hit. Each test run boots a copy, never the cached tree.

Run as `python -m tests.systemd.rootfs` to build (or find) it and print its path.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "iproute2",
            "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# A marker written last: its presence says the tree is complete.
COMPLETE = ".egress-agent-rootfs"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "egress-agent-systemd"


def mirror() -> str:
    """The host's own Debian mirror when it names one, so the build goes where apt goes."""
    override = os.environ.get("EGRESS_ROOTFS_MIRROR")
    if override:
        return override
    for path in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and len(words) > 2 and "security" not in words[1]:
                return words[1] if not words[1].startswith("[") else words[2]
    return DEFAULT_MIRROR


def cache_key(mirror_url: str) -> str:
    text = "\n".join([SUITE, VARIANT, mirror_url, *PACKAGES])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def missing_tools() -> list[str]:
    return [tool for tool in ("debootstrap", "systemd-nspawn", "nsenter")
            if shutil.which(tool) is None]


def ensure_rootfs() -> Path:
    """The cached tree, built first when missing (needs root and the Debian mirror)."""
    url = mirror()
    target = cache_dir() / f"{SUITE}-{cache_key(url)}"
    if (target / COMPLETE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".{SUITE}-", dir=target.parent))
    try:
        subprocess.run(
            ["debootstrap", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}",
             SUITE, str(work), url],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # The machine id is made per boot of each copy (systemd's first-boot logic).
        (work / "etc" / "machine-id").write_text("")
        work.chmod(0o755)  # mkdtemp made it 0700: no user but root could use the tree
        (work / COMPLETE).write_text(f"{SUITE} {url} {' '.join(PACKAGES)}\n")
        work.rename(target)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(work, ignore_errors=True)
        tail = (exc.stderr or "").strip().splitlines()[-5:]
        raise RuntimeError("debootstrap failed: " + " | ".join(tail)) from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target


if __name__ == "__main__":
    missing = missing_tools()
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (apt-get install debootstrap systemd-container)")
    print(ensure_rootfs())
