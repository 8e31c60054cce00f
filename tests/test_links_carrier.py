"""CarrierFiles: the sysfs carrier bits, used only when sysfs shows the watched namespace.
The real /sys/class/net of this host (loopback) and a directory laid out like it."""

from __future__ import annotations

import socket
from pathlib import Path

from collectors.links.carrier import CarrierFiles


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
