"""Drift thresholds that know the data's own variation. Evidently's defaults (normed Wasserstein or
Jensen-Shannon >= 0.1 on large samples) are right for data whose rows are independent; real data is not
(every flight of an hour shares its weather: 12k rows carry about a thousand independent values), and day
to day variation alone crosses 0.1. So, as NannyML does, each column's threshold is set from the reference
itself: the reference is cut into chunks by time (days, the monitor's window), each chunk is compared with
the rest of the reference by Evidently (its methods and scores, unchanged), and the column's threshold is
the mean of those scores plus ``k`` standard deviations, never below Evidently's default. ctloop chooses
the threshold; Evidently still computes every score and draws every report.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

MIN_CHUNK_ROWS = 100
MAX_CHUNKS = 7


@dataclass(frozen=True)
class ColumnCalibration:
    method: str
    default: float  # Evidently's threshold for this column and method
    threshold: float  # the one ctloop uses: max(default, mean + k * std)
    mean: float
    std: float
    scores: list[float] = field(default_factory=list)  # chunk vs rest, one per chunk


@dataclass(frozen=True)
class Calibration:
    chunk_by: str
    chunks: list[str]
    k: float
    columns: dict[str, ColumnCalibration]

    def thresholds(self) -> dict[str, float]:
        return {c: cal.threshold for c, cal in self.columns.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"chunk_by": self.chunk_by, "chunks": self.chunks, "k": self.k,
                "columns": {c: asdict(cal) for c, cal in self.columns.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(d["chunk_by"], list(d["chunks"]), float(d["k"]),
                   {c: ColumnCalibration(**cal) for c, cal in d["columns"].items()})


def calibrate(reference: pd.DataFrame, numerical: list[str], categorical: list[str], chunk_by: str,
              overrides: dict[str, float] | None = None, k: float = 3.0) -> Calibration | None:
    """Per-column thresholds from the reference's own chunk-to-chunk variation; None when the reference
    spans fewer than three chunks of at least ``MIN_CHUNK_ROWS`` rows (nothing to learn a spread from)."""
    import pandas as pd

    when = pd.to_datetime(reference[chunk_by], utc=True, errors="coerce")
    days = when.dt.date
    counts = days.value_counts()
    chunks = sorted(d for d, n in counts.items() if n >= MIN_CHUNK_ROWS)
    if len(chunks) < 3:
        return None
    if len(chunks) > MAX_CHUNKS:  # evenly spaced: enough to see the spread, bounded in cost
        step = len(chunks) / MAX_CHUNKS
        chunks = [chunks[int(i * step)] for i in range(MAX_CHUNKS)]
    scores: dict[str, list[float]] = {}
    methods: dict[str, tuple[str, float]] = {}
    for day in chunks:
        inside = days == day
        for column, (method, score, default) in column_scores(reference[~inside], reference[inside], numerical,
                                                              categorical).items():
            scores.setdefault(column, []).append(score)
            methods[column] = (method, (overrides or {}).get(column, default))
    columns = {}
    for column, values in scores.items():
        method, default = methods[column]
        if "p_value" in method:  # a test's p-value: lower is more drift; its level is not a spread to learn
            continue
        finite = [v for v in values if math.isfinite(v)]
        mean = sum(finite) / len(finite) if finite else 0.0
        std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) if len(finite) > 1 else 0.0
        columns[column] = ColumnCalibration(method, default, round(max(default, mean + k * std), 6), round(mean, 6),
                                            round(std, 6), [round(v, 6) for v in values])
    return Calibration(chunk_by, [d.isoformat() for d in chunks], k, columns)


def column_scores(reference: pd.DataFrame, current: pd.DataFrame, numerical: list[str], categorical: list[str]
                  ) -> dict[str, tuple[str, float, float]]:
    """Evidently's drift score per column, by the method and default threshold it picks: (method, score,
    threshold). Only the per-column metrics (no dataset preset, no tests, no report): what calibration
    repeats for every chunk of a reference."""
    os.environ.setdefault("DO_NOT_TRACK", "true")
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    columns = numerical + categorical
    ref, cur = reference[columns].copy(), current[columns].copy()
    for c in categorical:
        ref[c] = ref[c].astype("string")
        cur[c] = cur[c].astype("string")
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    snapshot = Report([ValueDrift(column=c) for c in columns]).run(
        Dataset.from_pandas(cur, data_definition=definition), Dataset.from_pandas(ref, data_definition=definition))
    return {m["config"]["column"]: (str(m["config"]["method"]), float(m["value"]), float(m["config"]["threshold"]))
            for m in snapshot.dict()["metrics"]}
