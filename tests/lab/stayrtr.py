"""A real StayRTR (Debian `stayrtr`) on 127.0.0.1, serving a VRP JSON file we write.

`-cache` points at the file and `-refresh 1` re-reads it every second, so rewriting the
file is how a test changes what the cache serves (StayRTR then sends Serial Notify and
answers Serial Queries with the difference). Stopped by PID.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.lab.netns import stop_process
from tests.lab.servers import free_port, http
from tests.lab.wait import TRANSIENT, NotYet, wait_until

STAYRTR = "stayrtr"


def stayrtr_missing() -> str | None:
    if shutil.which(STAYRTR) is None:
        return "stayrtr not installed (scripts/setup installs it)"
    return None


class StayRTR:
    def __init__(self, workdir: Path, protocol: int | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.cache = workdir / "vrps.json"
        self.port = free_port()
        self.metrics_port = free_port()
        self.protocol = protocol
        self.log_file = workdir / "stayrtr.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def write(self, roas: list[dict[str, Any]]) -> None:
        """Replace the file StayRTR serves (atomically: it never reads half a file)."""
        tmp = self.cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"metadata": {"generated": int(time.time())},
                                   "roas": roas}))
        tmp.replace(self.cache)

    def start(self, wait_data: bool = True) -> None:
        argv = [STAYRTR, "-bind", f"127.0.0.1:{self.port}",
                "-metrics.addr", f"127.0.0.1:{self.metrics_port}",
                "-cache", str(self.cache), "-refresh", "1", "-checktime=false",
                "-rtr.refresh", "30", "-rtr.retry", "5", "-rtr.expire", "600"]
        if self.protocol is not None:
            argv += ["-protocol", str(self.protocol)]
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        proc = self.proc

        def ready(_left: float) -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"stayrtr exited: {self.log_file.read_text()[-2000:]}")
            try:
                status, body = http("GET", f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=1.0)
            except TRANSIENT as exc:
                raise NotYet(str(exc)) from exc
            if status != 200:
                raise NotYet(f"metrics answered {status}")
            if wait_data and b"rpki_vrps{" not in body:
                raise NotYet("no VRPs loaded yet")
            return True

        wait_until(ready, 20, "stayrtr ready", interval_s=0.1)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
