"""CarrierFiles: the sysfs carrier bits, used only when sysfs shows the watched namespace.
The real /sys/class/net of this host (loopback) and a directory laid out like it."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from collectors.links import carrier as carrier_module
from collectors.links.carrier import CarrierFiles, StopSignal


def fake_sysfs(root: Path, links: dict[str, tuple[int, str]]) -> Path:
    for name, (index, carrier) in links.items():
        (root / name).mkdir(parents=True)
        (root / name / "ifindex").write_text(f"{index}\n")
        (root / name / "carrier").write_text(carrier)
    return root


def test_reads_follow_the_file_and_errors_are_values(tmp_path: Path) -> None:
    root = fake_sysfs(tmp_path, {"telecom": (7, "1\n"), "unicom": (8, "1\n")})
    files = CarrierFiles.open({"telecom": 7, "unicom": 8}, root)
    assert files is not None
    try:
        assert files.read() == (b"1\n", b"1\n")
        (root / "unicom" / "carrier").write_text("0\n")
        assert files.read() == (b"1\n", b"0\n")  # re-read in place, no reopen
    finally:
        files.close()


def test_another_namespaces_sysfs_is_not_used(tmp_path: Path) -> None:
    root = fake_sysfs(tmp_path, {"telecom": (7, "1\n")})
    assert CarrierFiles.open({"telecom": 9}, root) is None  # same name, other interface
    assert CarrierFiles.open({"telecom": 7, "mobile": 3}, root) is None  # missing
    assert CarrierFiles.open({"telecom": None}, root) is None  # deleted


def test_the_real_sysfs_of_loopback() -> None:
    index = socket.if_nametoindex("lo")
    files = CarrierFiles.open({"lo": index})
    assert files is not None
    try:
        assert files.read() == (b"1\n",)
    finally:
        files.close()


def overwrite(path: Path, value: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, value, 0)
    finally:
        os.close(fd)


@pytest.fixture(params=["c", "python"])
def wait_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both waits: the C one (built by scripts/setup) and the Python one used without it."""
    if request.param == "c":
        assert carrier_module._carrier is not None, "collectors/links/_carrier.c is not built"
    else:
        monkeypatch.setattr(carrier_module, "_carrier", None)
    return str(request.param)


def test_wait_change_returns_the_new_values(tmp_path: Path, wait_impl: str) -> None:
    root = fake_sysfs(tmp_path, {"telecom": (7, "1\n"), "unicom": (8, "1\n")})
    files = CarrierFiles.open({"telecom": 7, "unicom": 8}, root)
    stop = StopSignal()
    assert files is not None
    try:
        first = files.wait_change(None, stop.fileno(), 0.01)
        assert first == (b"1\n", b"1\n")  # nothing seen yet: at once
        # In place, same length: write_text truncates first, and a read between the
        # truncation and the write saw b"" (a change, but not the one written). sysfs
        # itself never shows a half-written value.
        timer = threading.Timer(0.2, overwrite, (root / "unicom" / "carrier", b"0\n"))
        timer.start()
        started = time.monotonic()
        assert files.wait_change(first, stop.fileno(), 0.01) == (b"1\n", b"0\n")
        assert time.monotonic() - started >= 0.15  # it waited for the change
        timer.join()
    finally:
        files.close()
        stop.close()


def test_wait_change_ends_on_stop_and_reports_errors_as_values(
        tmp_path: Path, wait_impl: str) -> None:
    root = fake_sysfs(tmp_path, {"telecom": (7, "1\n")})
    files = CarrierFiles.open({"telecom": 7}, root)
    stop = StopSignal()
    assert files is not None
    try:
        threading.Timer(0.1, stop.set).start()
        assert files.wait_change((b"1\n",), stop.fileno(), 0.01) is None
        assert stop.is_set()
    finally:
        files.close()
        stop.close()
    # a closed descriptor reads as EBADF's number, as read() gives it
    assert files.read() == ()
    bad = CarrierFiles({"telecom": 10_000})
    assert bad.read() == (str(errno.EBADF).encode(),)
    never = os.eventfd(0)
    try:
        assert bad.wait_change(None, never, 0.01) == (str(errno.EBADF).encode(),)
    finally:
        os.close(never)
