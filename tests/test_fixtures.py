"""The data fixtures the project carries are the ones their README describes.

Each fixture directory has a README.md with a `| file | what | sha256 |` table; every file
it lists must exist with that sha256, and every data file in the directory must be listed,
so a corrupted, swapped, added or missing fixture fails here rather than as a puzzling
result in a test that reads it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MRT = FIXTURES / "mrt"
MRT_FILES = {
    "updates.et-header.2015.gz",
    "updates.20160811.1600.gz",
    "updates.long_withdrawal.gz",
    "updates.nlri_mask_trailing_bits.gz",
    "bview.ipv6_unicast_add_path.gz",
}
SHA256 = re.compile(r"[0-9a-f]{64}")


def readme_sums(directory: Path) -> dict[str, str]:
    """file -> sha256 from the README's table (the header row names a `sha256` column)."""
    sums: dict[str, str] = {}
    columns: list[str] | None = None
    for line in (directory / "README.md").read_text().splitlines():
        if not line.startswith("|"):
            columns = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if columns is None:
            columns = cells
            continue
        if set("".join(cells)) <= set("-: "):
            continue  # the separator row
        row = dict(zip(columns, cells, strict=True))
        assert row["file"] not in sums, f"{row['file']} listed twice"
        assert SHA256.fullmatch(row["sha256"]), f"not a sha256: {row['sha256']!r}"
        sums[row["file"]] = row["sha256"]
    return sums


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def test_mrt_readme_lists_every_fixture() -> None:
    sums = readme_sums(MRT)
    assert set(sums) == MRT_FILES
    present = {p.name for p in MRT.iterdir() if p.name != "README.md"}
    assert present == MRT_FILES


@pytest.mark.parametrize("name", sorted(MRT_FILES))
def test_mrt_fixture_matches_its_sha256(name: str) -> None:
    path = MRT / name
    assert path.is_file(), f"fixture missing: {path}"
    assert sha256_file(path) == readme_sums(MRT)[name]


def test_readme_parser_reads_the_table(tmp_path: Path) -> None:
    """The parser takes the sha256 column by name, skips the separator and prose, and
    rejects a malformed sum (else a README edit could silently disable the checks)."""
    good = "a" * 64
    (tmp_path / "README.md").write_text(
        f"# t\n\ntext | with a bar\n\n| file | what | sha256 |\n| --- | --- | --- |\n"
        f"| x.gz | a file | {good} |\n\nmore text\n")
    assert readme_sums(tmp_path) == {"x.gz": good}
    (tmp_path / "README.md").write_text(
        "| file | what | sha256 |\n| --- | --- | --- |\n| x.gz | a file | abc |\n")
    with pytest.raises(AssertionError, match="not a sha256"):
        readme_sums(tmp_path)
