"""Ingestion of one data interval: extract the batch into ``raw/``, validate it with GX, then publish it to
``curated/`` or quarantine it. The three steps are the three tasks of ``<model>__ingest`` and the body of
``ctloop ingest``.
"""

from __future__ import annotations

import contextlib
import glob
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
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
    from ctloop.core.settings import Settings
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
            text=src.text,
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
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"date": self.day.isoformat(), "status": self.status, "rows": self.rows,
                "location": self.location, "reasons": self.reasons, "warnings": self.warnings}

    def line(self) -> str:
        """The CLI's one-line summary: where how many rows went, and why."""
        why = f": {'; '.join(self.reasons)}" if self.reasons else ""
        warned = f" with {len(self.warnings)} warning(s): {'; '.join(self.warnings)}" if self.warnings else ""
        return f"{self.day}: {self.status} ({self.rows} rows) -> {self.location}{why}{warned}"


def validate_batch(
    day: date, raw_files: list[Path], params: Params, lake: Lake, context: FileDataContext,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Validate the day's raw batch. On failure quarantine it (validation result beside it), withdraw any
    curated partition of that day, and raise :class:`ValidationFailed` listing the failed expectations.
    ``settings``: the model's, so each audit entry names its model (default: the process's)."""
    from ctloop.validation.run import validate_frame

    try:
        frame = read_raw(raw_files, params)
    except DataUnreadable as e:
        result = {"success": False, "suite": params.validation.suite, "row_count": 0,
                  "failed_expectations": [], "warnings": [], "error": str(e), "date": day.isoformat()}
        audit_record("validation", f"batch {day}", "failed", [str(e)], {"raw_files": [str(p) for p in raw_files]},
                     settings=settings)
        _quarantine(day, raw_files, result, lake, [str(e)], settings)
        raise ValidationFailed(f"{day}: batch quarantined: {e}") from e

    report = validate_frame(frame, params, context, interval=interval_of(day),
                            source=", ".join(str(p) for p in raw_files))
    result = report.to_dict() | {"date": day.isoformat(), "raw_files": [str(p) for p in raw_files]}
    outcome = ("passed with warnings" if report.warnings else "passed") if report.success else "failed"
    # a warning is recorded (and alerted) whatever happens to the batch; the failures decide its fate
    audit_record("validation", f"batch {day}", outcome, [f.describe() for f in report.failures + report.warnings],
                 {"suite": report.suite, "rows": report.row_count, "evaluated": report.evaluated,
                  "warnings": len(report.warnings), "raw_files": [str(p) for p in raw_files]}, settings=settings)
    if not report.success:
        blocking = report.failures or report.warnings  # validation.on_warning: quarantine
        _quarantine(day, raw_files, result, lake, [f.describe() for f in blocking], settings)
        raise ValidationFailed(f"{day}: batch quarantined ({report.row_count} rows): {report.summary()}",
                               [asdict(f) for f in blocking], rows=report.row_count)
    return result


def _quarantine(day: date, raw_files: list[Path], result: dict[str, Any], lake: Lake, reasons: list[str],
                settings: Settings | None) -> None:
    for raw in raw_files:
        target = lake.write_quarantine(day, raw, result)
        audit_record("quarantine", f"batch {day}", "quarantined", reasons,
                     {"raw_file": str(raw), "quarantine": str(target)}, settings=settings)
    if lake.clear_curated(day):
        audit_record("quarantine", f"curated {day}", "withdrawn", ["the day's newest batch failed validation"],
                     {"curated": str(lake.partition("curated", day))}, settings=settings)


def publish_curated(day: date, raw_files: list[Path], validation: dict[str, Any], params: Params, lake: Lake) -> Path:
    """Write the validated batch as ``curated/dt=…`` (replacing any earlier version of that day) and
    version it; until DVC has, the day is not for training (a run killed in between leaves it invisible)."""
    return publish_curated_days([(day, raw_files, validation)], params, lake)[0]


def _manifest(day: date, raw_files: list[Path], validation: dict[str, Any], rows: int) -> dict[str, Any]:
    from ctloop.data.store import file_sha256

    return {
        "date": day.isoformat(),
        "rows": rows,
        "raw_files": [{"path": str(p), "sha256": file_sha256(p)} for p in raw_files],
        "suite": validation.get("suite"),
        "expectations_evaluated": validation.get("evaluated"),
        "validation": {k: validation.get(k) for k in ("suite", "success", "evaluated", "row_count")},
        "warnings": [_short(w) for w in validation.get("warnings", [])],
    }


def _short(failure: dict[str, Any]) -> str:
    return f"{failure.get('expectation', '')}" + (f" on {failure.get('column')}" if failure.get("column") else "")


def ingest_day(day: date, params: Params, lake: Lake, context: FileDataContext,
               settings: Settings | None = None) -> IngestOutcome:
    """All three steps in one process (the CLI's ``ctloop ingest``); the DAG runs them as separate tasks."""
    return ingest_days([day], params, lake, context, settings=settings)[0]


def ingest_days(days: list[date], params: Params, lake: Lake, context: FileDataContext,
                progress: Callable[[IngestOutcome], None] | None = None,
                settings: Settings | None = None) -> list[IngestOutcome]:
    """A range of days in one process: the imports, the GX context and the DVC repository are set up once,
    and the curated partitions are versioned by one ``dvc add`` and one ``dvc push`` at the end (each
    stays invisible to training until then). Re-running a range rewrites the same partitions."""
    outcomes: list[IngestOutcome] = []
    validated: list[tuple[date, list[Path], dict[str, Any]]] = []
    for day in days:
        raw = extract_batch(day, params, lake)
        try:
            validation = validate_batch(day, raw, params, lake, context, settings)
        except ValidationFailed as e:
            outcome = IngestOutcome(day, "quarantined", e.rows, str(lake.partition("quarantine", day)),
                                    [_short(f) for f in e.failures] or [str(e)])
            outcomes.append(outcome)
            if progress is not None:
                progress(outcome)
            continue
        validated.append((day, raw, validation))
    published = publish_curated_days(validated, params, lake)
    for (day, _, validation), curated in zip(validated, published, strict=True):
        outcome = IngestOutcome(day, "curated", int(validation["row_count"]), str(curated.parent), [],
                                [_short(w) for w in validation.get("warnings", [])])
        outcomes.append(outcome)
        if progress is not None:
            progress(outcome)
    return sorted(outcomes, key=lambda o: o.day)


def publish_curated_days(batches: list[tuple[date, list[Path], dict[str, Any]]], params: Params,
                         lake: Lake) -> list[Path]:
    """:func:`publish_curated` for many days: every partition written, then versioned together."""
    if not batches:
        return []
    written: list[Path] = []
    with contextlib.ExitStack() as stack:
        for day, _, _ in batches:
            stack.enter_context(lake.publishing(day))
        for day, raw_files, validation in batches:
            frame = read_raw(raw_files, params)
            written.append(lake.write_curated(day, frame, _manifest(day, raw_files, validation, len(frame))))
        LakeVersions.for_lake(lake.root).track([w.parent for w in written])
    return written
