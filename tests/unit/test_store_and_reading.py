from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from ctloop.core.errors import DataUnreadable
from ctloop.data.reading import read_batch, sniff_format
from ctloop.data.store import Lake

DAY = date(2026, 1, 5)


def test_raw_is_content_addressed_written_once_and_read_only(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    src = tmp_path / "in.csv"
    src.write_text("a,b\n1,2\n")
    first = lake.write_raw(DAY, src)
    assert lake.write_raw(DAY, src) == first and len(lake.raw_files(DAY)) == 1
    assert first.stat().st_mode & 0o222 == 0
    src.write_text("a,b\n3,4\n")  # a corrected re-delivery is kept beside the first, never over it
    second = lake.write_raw(DAY, src)
    assert second != first and first.read_text() == "a,b\n1,2\n" and len(lake.raw_files(DAY)) == 2


def test_curated_rewrite_replaces_the_partition(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.write_curated(DAY, pd.DataFrame({"x": [1, 2, 3]}), {"rows": 3})
    lake.write_curated(DAY, pd.DataFrame({"x": [1, 2, 3]}), {"rows": 3})
    assert len(lake.read_curated([DAY])) == 3
    assert sorted(p.name for p in lake.partition("curated", DAY).iterdir()) == ["_manifest.json", "part-0.parquet"]
    assert lake.curated_days() == [DAY]
    assert not [p for p in lake.partition("curated", DAY).parent.iterdir() if p.name.startswith(".")]


def test_quarantine_keeps_the_batch_with_its_result(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    src = tmp_path / "in.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(src)
    raw = lake.write_raw(DAY, src)
    q = lake.write_quarantine(DAY, raw, {"success": False})
    assert (q / raw.name).read_bytes() == raw.read_bytes() and (q / "validation.json").exists()
    assert raw.exists() and lake.quarantined_days() == [DAY]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("fake.parquet", b"ticket_id,created_at\nT1,2026-01-05\n", "named .parquet but holds CSV text"),
        ("empty.parquet", b"", "file is empty"),
        ("binary.csv", b"\x00\xff\xfe\x01" * 64, "not UTF-8 text"),
        ("truncated.parquet", b"PAR1" + b"\x00" * 32, "unreadable parquet file"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataUnreadable) as err:
        read_batch(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DataUnreadable, match="file not found"):
        sniff_format(tmp_path / "nope.parquet")
    with pytest.raises(DataUnreadable, match="is a directory"):
        sniff_format(tmp_path)
