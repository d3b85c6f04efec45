"""The partitioned Parquet lake: ``raw/``, ``quarantine/``, ``curated/`` (later ``predictions/``, ``labels/``,
``reports/``), one ``dt=YYYY-MM-DD`` partition per data interval.

Rules (DESIGN.md): raw is content-addressed and written once, never changed or deleted; curated and
quarantine partitions are rewritten whole by a re-run (atomic rename), so re-running a day never
duplicates rows.

What a write leaves when it fails: nothing. A full disk is a :class:`StorageFull` naming the directory and
the space, with the half-written temporary file or staging directory removed. Temporary names carry the
host and process that made them (``.incoming-<host>-<pid>-…``), so the next write to the same place removes
what a killed process left behind, and never what a live one is writing.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.core.errors import StorageFull

if TYPE_CHECKING:
    import pandas as pd

ZONES = ("raw", "quarantine", "curated", "training_sets", "predictions", "labels", "reports", "raw_labels",
         "quarantine_labels")
_TEMP_MARKS = (".incoming-", ".staging-", ".old-", ".unversioned-")


def temp_tag() -> str:
    """What a temporary name says about its maker: this host and this process."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(directory: Path) -> list[Path]:
    """Remove the temporary files and staging directories that processes of this host left in
    ``directory`` when they were killed (their process is gone); what live processes write stays."""
    removed: list[Path] = []
    if not directory.exists():
        return removed
    host = socket.gethostname()
    for path in directory.iterdir():
        mark = next((m for m in _TEMP_MARKS if m in path.name), None)
        if mark is None:
            continue
        owner = path.name.split(mark, 1)[1]
        if not owner.startswith(f"{host}-"):
            continue  # another host's, or an old unmarked name: not ours to judge
        pid = owner[len(host) + 1:].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def no_space_is_an_error(directory: Path, needed: int | None = None) -> Iterator[None]:
    """Turn a full disk into one :class:`StorageFull` naming the directory and the space."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        free = shutil.disk_usage(directory if directory.exists() else directory.parent).free
        need = f"needs {needed} bytes, " if needed else ""
        raise StorageFull(f"{directory}: no space left on device ({need}{free} bytes free)") from None


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in blocks (raw batches and training sets can be large)."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()


def file_sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def _atomic_replace_dir(staging: Path, target: Path) -> None:
    """Swap ``staging`` into ``target``; readers see the old or the new partition, never a mix."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        old = target.with_name(f".{target.name}.old-{temp_tag()}")
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old)
    else:
        staging.rename(target)


@dataclass(frozen=True)
class Lake:
    root: Path

    def partition(self, zone: str, day: date) -> Path:
        if zone not in ZONES:
            raise ValueError(f"unknown lake zone {zone!r}")
        return self.root / zone / f"dt={day.isoformat()}"

    def init(self) -> None:
        for zone in ZONES:
            (self.root / zone).mkdir(parents=True, exist_ok=True)

    # raw ------------------------------------------------------------------------------------------
    def write_raw(self, day: date, source_file: Path, zone: str = "raw") -> Path:
        """Copy a delivered file into ``<zone>/dt=…/`` (``raw`` for batches, ``raw_labels`` for label
        deliveries) under its content hash; idempotent, never overwrites."""
        digest = file_sha256(source_file)
        suffix = "".join(source_file.suffixes) or ".bin"
        target = self.partition(zone, day) / f"batch-{digest[:16]}{suffix}"
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(target.parent)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".incoming-{temp_tag()}-")
        os.close(fd)
        try:
            with no_space_is_an_error(target.parent, source_file.stat().st_size):
                shutil.copyfile(source_file, tmp)
            os.chmod(tmp, 0o444)  # raw is read-only: nothing downstream may edit it in place
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return target

    def raw_files(self, day: date) -> list[Path]:
        part = self.partition("raw", day)
        return sorted(p for p in part.glob("batch-*") if p.is_file()) if part.exists() else []

    # curated / quarantine -------------------------------------------------------------------------
    def write_curated(self, day: date, frame: pd.DataFrame, manifest: dict[str, Any]) -> Path:
        target = self.partition("curated", day)
        with self._staging(target) as staging:
            frame.to_parquet(staging / "part-0.parquet", index=False)
            (staging / "_manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        return target / "part-0.parquet"

    def write_quarantine(self, day: date, raw_file: Path, result: dict[str, Any], zone: str = "quarantine") -> Path:
        """Put a copy of the rejected batch and its validation result side by side under ``quarantine/``
        (``quarantine_labels/`` for a rejected label delivery)."""
        target = self.partition(zone, day) / raw_file.stem
        with self._staging(target, raw_file.stat().st_size) as staging:
            shutil.copyfile(raw_file, staging / raw_file.name)
            (staging / "validation.json").write_text(json.dumps(result, indent=2, default=str))
        return target

    @contextlib.contextmanager
    def _staging(self, target: Path, needed: int | None = None) -> Iterator[Path]:
        """A staging directory beside ``target``, swapped in whole when the block ends; removed when it fails
        (a full disk is a :class:`StorageFull` naming the place)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(target.parent)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging-{temp_tag()}-"))
        try:
            with no_space_is_an_error(target.parent, needed):
                yield staging
            _atomic_replace_dir(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def clear_curated(self, day: date) -> bool:
        """Withdraw a day's curated partition (its newest batch failed); raw and quarantine keep the data."""
        target = self.partition("curated", day)
        # the partition's DVC pointer goes with it (its data stays in the DVC cache and remote)
        target.with_name(f"{target.name}.dvc").unlink(missing_ok=True)
        if not target.exists():
            return False
        shutil.rmtree(target)
        return True

    def curated_days(self) -> list[date]:
        """The days with a curated partition that training may use: written whole, and not in the middle
        of being published (a publication cut short before DVC versioned it stays invisible until a re-run
        of that day finishes it)."""
        base = self.root / "curated"
        if not base.exists():
            return []
        return sorted(
            date.fromisoformat(p.name.removeprefix("dt="))
            for p in base.iterdir()
            if p.name.startswith("dt=") and not p.name.endswith(".dvc") and (p / "part-0.parquet").exists()
            and not self.unversioned_marker(date.fromisoformat(p.name.removeprefix("dt="))).exists()
        )

    def unversioned_marker(self, day: date) -> Path:
        return self.root / "curated" / f".dt={day.isoformat()}.unversioned"

    @contextlib.contextmanager
    def publishing(self, day: date) -> Iterator[None]:
        """While the block runs, ``day``'s curated partition is not for training: the marker is written
        first and removed only when the block (the write and its DVC versioning) completes. A stale
        pointer to the day's previous version goes first, so a pointer never describes other data."""
        marker = self.unversioned_marker(day)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(temp_tag())
        self.partition("curated", day).with_name(f"dt={day.isoformat()}.dvc").unlink(missing_ok=True)
        yield
        marker.unlink()

    def quarantined_days(self) -> list[date]:
        base = self.root / "quarantine"
        if not base.exists():
            return []
        return sorted(date.fromisoformat(p.name.removeprefix("dt=")) for p in base.iterdir() if p.name.startswith("dt="))

    def read_curated(self, days: list[date]) -> pd.DataFrame:
        import pandas as pd

        frames = [pd.read_parquet(self.partition("curated", d) / "part-0.parquet") for d in days]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
