"""Ingestion of one data interval: extract the batch into ``raw/``, validate it with GX, then publish it to
``curated/`` or quarantine it. The three steps are the three tasks of ``ctloop_ingest`` and the body of
``ctloop ingest``.
"""

from __future__ import annotations

import glob
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ctloop.core.audit import record as audit_record
from ctloop.core.errors import DataUnreadable, ValidationFailed
from ctloop.data.reading import read_batch
from ctloop.data.versioning import LakeVersions

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.data_context import FileDataContext

    from ctloop.core.params import Params
    from ctloop.data.store import Lake


def interval_of(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def extract_batch(day: date, params: Params, lake: Lake) -> list[Path]:
    """Land the day's delivery in ``raw/dt=…/`` unchanged and return the raw files."""
    src = params.source
    if src.kind == "simulator":
        from ctloop.data.simulator import SimulationSpec, simulate_day

        incident = src.incidents.get(day)
        spec = SimulationSpec(
            scenario=incident or src.scenario,
            drift_start=day if incident else src.drift_start,
            magnitude=src.magnitude,
            rows=src.rows_per_day,
            seed=src.seed,
        )
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "batch.parquet"
            simulate_day(day, spec).to_parquet(out, index=False)
            return [lake.write_raw(day, out)]
    assert src.path is not None
    pattern = src.path.format(ds=day.isoformat())
    matches = sorted(Path(p) for p in glob.glob(pattern))
    if not matches:
        raise DataUnreadable(f"{pattern}: no file delivered for {day} (source.path in params.yaml)")
    return [lake.write_raw(day, m) for m in matches]


def read_raw(raw_files: list[Path], params: Params) -> pd.DataFrame:
    import pandas as pd

    frames = [read_batch(p, params.dataset) for p in raw_files]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class IngestOutcome:
    day: date
    status: Literal["curated", "quarantined"]
    rows: int
    location: str
    reasons: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"date": self.day.isoformat(), "status": self.status, "rows": self.rows,
                "location": self.location, "reasons": self.reasons}


def validate_batch(
    day: date, raw_files: list[Path], params: Params, lake: Lake, context: FileDataContext
) -> dict[str, Any]:
    """Validate the day's raw batch. On failure quarantine it (validation result beside it), withdraw any
    curated partition of that day, and raise :class:`ValidationFailed` listing the failed expectations."""
    from ctloop.validation.run import validate_frame

    try:
        frame = read_raw(raw_files, params)
    except DataUnreadable as e:
        result = {"success": False, "suite": params.validation.suite, "row_count": 0,
                  "failed_expectations": [], "error": str(e), "date": day.isoformat()}
        audit_record("validation", f"batch {day}", "failed", [str(e)], {"raw_files": [str(p) for p in raw_files]})
        _quarantine(day, raw_files, result, lake, [str(e)])
        raise ValidationFailed(f"{day}: batch quarantined: {e}") from e

    report = validate_frame(frame, params, context, interval=interval_of(day),
                            source=", ".join(str(p) for p in raw_files))
    result = report.to_dict() | {"date": day.isoformat(), "raw_files": [str(p) for p in raw_files]}
    audit_record("validation", f"batch {day}", "passed" if report.success else "failed",
           [f.describe() for f in report.failures],
           {"suite": report.suite, "rows": report.row_count, "evaluated": report.evaluated,
            "raw_files": [str(p) for p in raw_files]})
    if not report.success:
        _quarantine(day, raw_files, result, lake, [f.describe() for f in report.failures])
        raise ValidationFailed(f"{day}: batch quarantined: {report.summary()}",
                               [asdict(f) for f in report.failures])
    return result


def _quarantine(day: date, raw_files: list[Path], result: dict[str, Any], lake: Lake, reasons: list[str]) -> None:
    for raw in raw_files:
        target = lake.write_quarantine(day, raw, result)
        audit_record("quarantine", f"batch {day}", "quarantined", reasons,
               {"raw_file": str(raw), "quarantine": str(target)})
    if lake.clear_curated(day):
        audit_record("quarantine", f"curated {day}", "withdrawn", ["the day's newest batch failed validation"],
               {"curated": str(lake.partition("curated", day))})


def publish_curated(day: date, raw_files: list[Path], validation: dict[str, Any], params: Params, lake: Lake) -> Path:
    """Write the validated batch as ``curated/dt=…`` (replacing any earlier version of that day)."""
    from ctloop.data.store import file_sha256

    frame = read_raw(raw_files, params)
    manifest = {
        "date": day.isoformat(),
        "rows": len(frame),
        "raw_files": [{"path": str(p), "sha256": file_sha256(p)} for p in raw_files],
        "suite": validation.get("suite"),
        "expectations_evaluated": validation.get("evaluated"),
        "validation": {k: validation.get(k) for k in ("suite", "success", "evaluated", "row_count")},
    }
    # not for training until DVC has versioned it: a run killed in between leaves the day invisible
    with lake.publishing(day):
        written = lake.write_curated(day, frame, manifest)
        LakeVersions.for_lake(lake.root).track([written.parent])
    return written


def ingest_day(day: date, params: Params, lake: Lake, context: FileDataContext) -> IngestOutcome:
    """All three steps in one process (the CLI's ``ctloop ingest``); the DAG runs them as separate tasks."""
    raw = extract_batch(day, params, lake)
    try:
        validation = validate_batch(day, raw, params, lake, context)
    except ValidationFailed as e:
        return IngestOutcome(day, "quarantined", 0, str(lake.partition("quarantine", day)),
                             [f"{f.get('expectation', '')}" + (f" on {f.get('column')}" if f.get("column") else "")
                              for f in e.failures] or [str(e)])
    curated = publish_curated(day, raw, validation, params, lake)
    return IngestOutcome(day, "curated", int(validation["row_count"]), str(curated.parent), [])
