"""The lake under a full disk and killed processes. A small tmpfs as the lake: a full disk during ingest
is one line naming the directory and the space (exit 2), leaves no temporary file or staging directory,
and the next run with space converges. A SIGKILL while DVC versions the curated partition leaves the day
invisible to training until a re-run has versioned it. What killed runs left behind is cleaned by the
next run; what a live process is writing is not."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli, write_params

pytestmark = pytest.mark.faults
DAY = date(2026, 1, 5)


@pytest.fixture
def small_lake(tmp_path: Path) -> Iterator[Path]:
    lake = tmp_path / "lake"
    lake.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(lake)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield lake
    finally:
        subprocess.run(["umount", "-l", str(lake)], capture_output=True)


def _env(tmp_path: Path, lake: Path, rows: int) -> dict[str, str]:
    params = write_params(tmp_path / "params.yaml", source={"rows_per_day": rows})
    return {"CTLOOP_HOME": str(tmp_path / "home"), "CTLOOP_PARAMS": str(params), "CTLOOP_LAKE": str(lake)}


def _temps(lake: Path) -> list[Path]:
    return [p for p in lake.rglob("*") if any(m in p.name for m in (".incoming-", ".staging-", ".old-"))]


def _fill(lake: Path, leave: int) -> Path:
    filler = lake / "filler"
    free = shutil.disk_usage(lake).free
    with filler.open("wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
    return filler


@pytest.mark.parametrize("leave_kb", [40, 700])  # 40 kB: the raw copy fails; 700 kB: raw fits, the rest not
def test_a_full_disk_is_one_line_leaves_nothing_half_written_and_converges(
        tmp_path: Path, small_lake: Path, leave_kb: int) -> None:
    env = _env(tmp_path, small_lake, rows=12_000)
    filler = _fill(small_lake, leave_kb * 1024)
    done = run_cli("ingest", "--date", DAY.isoformat(), env=env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"ctloop: error: {small_lake}") and "no space left on device" in line
    assert "bytes free" in line and "Traceback" not in done.stderr
    assert _temps(small_lake) == [], "no temporary file or staging directory is left"
    assert not (small_lake / "curated" / f"dt={DAY}" / "part-0.parquet").exists() or \
        (small_lake / "curated" / f".dt={DAY}.unversioned").exists(), "no unversioned day is visible to training"
    filler.unlink()
    again = run_cli("ingest", "--date", DAY.isoformat(), "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert (small_lake / "curated" / f"dt={DAY}.dvc").exists()
    assert not (small_lake / "curated" / f".dt={DAY}.unversioned").exists()
    assert len(list((small_lake / "raw" / f"dt={DAY}").glob("batch-*"))) == 1, "the raw batch is stored once"


def test_stale_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a pid that has exited
    raw = lake / "raw" / f"dt={DAY}"
    curated = lake / "curated"
    raw.mkdir(parents=True)
    (curated / f".dt={DAY}.staging-{host}-{dead}-abc").mkdir(parents=True)
    stale_file = raw / f".incoming-{host}-{dead}-xyz"
    stale_file.write_bytes(b"half a batch")
    live = raw / f".incoming-{host}-{os.getpid()}-mine"
    live.write_bytes(b"being written")
    other_host = raw / f".incoming-elsewhere-{dead}-xyz"
    other_host.write_bytes(b"another host's")
    env = _env(tmp_path, lake, rows=300)
    assert run_cli("ingest", "--date", DAY.isoformat(), env=env).returncode == 0
    assert not stale_file.exists() and not (curated / f".dt={DAY}.staging-{host}-{dead}-abc").exists()
    assert live.exists() and other_host.exists()


def test_a_day_killed_while_dvc_versions_it_stays_invisible_to_training_until_rerun(tmp_path: Path) -> None:
    from ctloop.data.store import Lake

    lake_root = tmp_path / "lake"
    env = {**os.environ, **_env(tmp_path, lake_root, rows=300)}
    marker = lake_root / "curated" / f".dt={DAY}.unversioned"
    proc = subprocess.Popen([str(Path(sys.executable).with_name("ctloop")), "ingest", "--date", DAY.isoformat()],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, "the ingest finished before the kill point was reached"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lake = Lake(lake_root)
    assert DAY not in lake.curated_days(), "a partition DVC has not versioned is not for training"
    assert lake.raw_files(DAY), "the raw batch is kept"
    assert run_cli("ingest", "--date", DAY.isoformat(), env=env).returncode == 0
    assert lake.curated_days() == [DAY] and not marker.exists()
    assert (lake_root / "curated" / f"dt={DAY}.dvc").exists()
