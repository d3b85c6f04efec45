"""The partitioned Parquet lake: ``raw/``, ``quarantine/``, ``curated/`` (later ``predictions/``, ``labels/``,
``reports/``), one ``dt=YYYY-MM-DD`` partition per data interval.

Rules (DESIGN.md): raw is content-addressed and written once, never changed or deleted; curated and
quarantine partitions are rewritten whole by a re-run (atomic rename), so re-running a day never
duplicates rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

ZONES = ("raw", "quarantine", "curated", "training_sets", "predictions", "labels", "reports")


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
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
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
    def write_raw(self, day: date, source_file: Path) -> Path:
        """Copy a delivered file into ``raw/dt=…/`` under its content hash; idempotent, never overwrites."""
        digest = file_sha256(source_file)
        suffix = "".join(source_file.suffixes) or ".bin"
        target = self.partition("raw", day) / f"batch-{digest[:16]}{suffix}"
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        os.close(fd)
        shutil.copyfile(source_file, tmp)
        os.chmod(tmp, 0o444)  # raw is read-only: nothing downstream may edit it in place
        os.replace(tmp, target)
        return target

    def raw_files(self, day: date) -> list[Path]:
        part = self.partition("raw", day)
        return sorted(p for p in part.glob("batch-*") if p.is_file()) if part.exists() else []

    # curated / quarantine -------------------------------------------------------------------------
    def write_curated(self, day: date, frame: pd.DataFrame, manifest: dict[str, Any]) -> Path:
        target = self.partition("curated", day)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging-"))
        frame.to_parquet(staging / "part-0.parquet", index=False)
        (staging / "_manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        _atomic_replace_dir(staging, target)
        return target / "part-0.parquet"

    def write_quarantine(self, day: date, raw_file: Path, result: dict[str, Any]) -> Path:
        """Put a copy of the rejected batch and its validation result side by side under ``quarantine/``."""
        target = self.partition("quarantine", day) / raw_file.stem
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging-"))
        shutil.copyfile(raw_file, staging / raw_file.name)
        (staging / "validation.json").write_text(json.dumps(result, indent=2, default=str))
        _atomic_replace_dir(staging, target)
        return target

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
        base = self.root / "curated"
        if not base.exists():
            return []
        return sorted(
            date.fromisoformat(p.name.removeprefix("dt="))
            for p in base.iterdir()
            if p.name.startswith("dt=") and (p / "part-0.parquet").exists()
        )

    def quarantined_days(self) -> list[date]:
        base = self.root / "quarantine"
        if not base.exists():
            return []
        return sorted(date.fromisoformat(p.name.removeprefix("dt=")) for p in base.iterdir() if p.name.startswith("dt="))

    def read_curated(self, days: list[date]) -> pd.DataFrame:
        import pandas as pd

        frames = [pd.read_parquet(self.partition("curated", d) / "part-0.parquet") for d in days]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
