"""Ground truth from a real system. A label delivery (a file per day: ``labels.path`` with ``{ds}``, and
``{home}`` for ``CTLOOP_HOME``) is landed unchanged in ``raw_labels/``, checked against the labels
contract (:func:`ctloop.data.predictions.check_labels`: the columns, the classes, one label per id,
arrival times), then stored in ``labels/dt=<arrival day>/`` where the monitor joins it with the
prediction log; a delivery that fails is quarantined whole with its reasons, never half-stored.
``POST /feedback`` on ``ctloop serve`` writes the same partitions.
"""

from __future__ import annotations

import glob
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ctloop.core.audit import record as audit_record
from ctloop.core.errors import ConfigError

if TYPE_CHECKING:
    from ctloop.core.params import Params
    from ctloop.core.settings import Settings
    from ctloop.data.store import Lake


@dataclass(frozen=True)
class LabelsOutcome:
    day: date
    status: Literal["stored", "quarantined", "none"]
    rows: int
    files: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"day": self.day.isoformat()}

    def line(self) -> str:
        why = f": {'; '.join(self.reasons)}" if self.reasons else ""
        return f"{self.day}: labels {self.status} ({self.rows} rows, {len(self.files)} file(s)){why}"


def delivery_pattern(params: Params, settings: Settings, day: date) -> str:
    path = params.labels.path
    if not path:
        raise ConfigError("labels.path is not set in params.yaml: there is no label delivery to ingest "
                          "(labels can still come through ctloop serve's POST /feedback)")
    return path.format(ds=day.isoformat(), home=settings.home)


def ingest_labels(day: date, params: Params, settings: Settings, lake: Lake) -> LabelsOutcome:
    """The day's label deliveries, each stored or quarantined whole; ``none`` when nothing arrived."""
    from datetime import UTC, datetime, time

    from ctloop.core.errors import DataUnreadable
    from ctloop.data.predictions import check_labels, write_labels
    from ctloop.data.reading import read_batch

    spec = params.labels
    files = sorted(Path(p) for p in glob.glob(delivery_pattern(params, settings, day)))
    if not files:
        return LabelsOutcome(day, "none", 0, reasons=["no label delivery for this day"])
    arrived = datetime.combine(day, time(0), tzinfo=UTC)
    stored_rows, problems, raws = 0, [], []
    for delivered in files:
        raw = lake.write_raw(day, delivered, zone="raw_labels")
        raws.append(str(raw))
        try:
            frame = read_batch(raw)
            clean, issues = check_labels(frame, params.dataset, spec.id_column, spec.label_column, spec.time_column,
                                         arrived)
        except DataUnreadable as e:
            clean, issues = None, [str(e)]
        if issues:
            result = {"day": day.isoformat(), "file": str(delivered), "raw": str(raw), "problems": issues}
            target = lake.write_quarantine(day, raw, result, zone="quarantine_labels")
            audit_record("labels", f"labels {day} {delivered.name}", "quarantined", issues,
                         {"raw": str(raw), "quarantine": str(target)}, settings=settings)
            problems += [f"{delivered.name}: {i}" for i in issues]
            continue
        assert clean is not None
        write_labels(lake, clean, name=f"delivery-{raw.stem.removeprefix('batch-')}")
        stored_rows += len(clean)
        audit_record("labels", f"labels {day} {delivered.name}", "stored", [],
                     {"rows": len(clean), "raw": str(raw)}, settings=settings)
    status: Literal["stored", "quarantined"] = "quarantined" if problems else "stored"
    return LabelsOutcome(day, status, stored_rows, raws, problems)


def deliver_labels(frame: Any, params: Params, settings: Settings, day: date, name: str) -> Path:
    """Write a label delivery where ``labels.path`` says the day's files arrive (the simulator's traffic
    delivers its labels this way, as a real labelling system would)."""
    pattern = delivery_pattern(params, settings, day)
    folder = Path(pattern).parent if any(ch in Path(pattern).name for ch in "*?[") else Path(pattern)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.parquet"
    frame.to_parquet(target, index=False)
    return target
