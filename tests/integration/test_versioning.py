"""DVC versioning of the lake under concurrency: several processes versioning partitions of a fresh lake
at once (the first ones race to initialise it) all succeed, and every partition is tracked and pushed."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ctloop.data.versioning import LakeVersions

pytestmark = pytest.mark.integration


def _track(root: str, cache: str, remote: str, day: int) -> None:
    LakeVersions(Path(root), Path(cache), remote).track([Path(root) / "curated" / f"dt=2026-01-0{day}"])


def test_concurrent_first_tracking_of_a_fresh_lake(tmp_path: Path) -> None:
    lake, cache, remote = tmp_path / "lake", tmp_path / "cache", tmp_path / "remote"
    for day in range(1, 6):
        part = lake / "curated" / f"dt=2026-01-0{day}"
        part.mkdir(parents=True)
        pd.DataFrame({"x": [day] * 10}).to_parquet(part / "part-0.parquet")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_track, args=(str(lake), str(cache), str(remote), d)) for d in range(1, 6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 5
    assert "no_scm = True" in (lake / ".dvc" / "config").read_text()
    versions = LakeVersions(lake, cache, str(remote))
    assert versions.status() == {}
    for day in range(1, 6):
        md5 = yaml.safe_load((lake / "curated" / f"dt=2026-01-0{day}.dvc").read_text())["outs"][0]["md5"]
        assert (remote / "files" / "md5" / md5[:2] / md5[2:]).exists()
