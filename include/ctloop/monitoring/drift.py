"""Data and prediction drift with Evidently, at any log size.

Evidently's preset on a whole production log does not scale (1M rows took 44-91 s here; 10M runs out
of memory), so ctloop reads Parquet row group by row group, keeps a bounded *uniform* sample of each
side, and lets Evidently decide on the samples with its own methods and thresholds (normed Wasserstein
for numeric and Jensen-Shannon for categorical columns on large samples, threshold 0.1) or those set per
column in ``params.yaml``. The verdict per column is Evidently's own test result. The same samples feed
the human HTML report.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.core.errors import DataUnreadable, SchemaError

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.core.params import DatasetSpec


@dataclass(frozen=True)
class DriftPolicy:
    drift_share: float = 0.5
    sample_rows: int = 20_000
    seed: int = 0
    per_column_method: dict[str, str] = field(default_factory=dict)
    per_column_threshold: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ColumnDrift:
    method: str
    score: float
    threshold: float
    drift: bool


@dataclass(frozen=True)
class DriftResult:
    dataset_drift: bool
    drift_share: float
    columns: dict[str, ColumnDrift]
    rows: dict[str, int]
    sampled: dict[str, int]
    share_threshold: float

    @property
    def drifted_columns(self) -> list[str]:
        return sorted(c for c, d in self.columns.items() if d.drift)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset_drift": self.dataset_drift, "drift_share": self.drift_share,
                "columns": {c: asdict(d) for c, d in self.columns.items()}, "rows": self.rows,
                "sampled": self.sampled, "share_threshold": self.share_threshold}


def parquet_files(path: Path) -> list[Path]:
    if not path.exists():
        raise DataUnreadable(f"{path}: not found")
    files = sorted(p for p in path.rglob("*.parquet") if p.is_file()) if path.is_dir() else [path]
    if not files:
        raise DataUnreadable(f"{path}: no Parquet files under this directory")
    return files


def parquet_columns(path: Path) -> list[str]:
    """The columns of a Parquet file or directory (its first file); DataUnreadable naming the file when it
    is empty, not Parquet or corrupt."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    first = parquet_files(path)[0]
    try:
        return list(pq.ParquetFile(first).schema_arrow.names)
    except (pa.ArrowException, OSError) as e:
        size = first.stat().st_size
        what = "an empty file (0 bytes)" if size == 0 else f"not a readable Parquet file: {e}"
        raise DataUnreadable(f"{first}: {what}") from None


def sample_parquet(path: Path | list[Path], columns: list[str] | None, n: int, seed: int = 0
                   ) -> tuple[pd.DataFrame, int]:
    """A uniform sample of ``n`` rows (all rows when fewer) and the total row count of a file, a directory or
    a list of files, reading one row group at a time so memory stays bounded by the sample plus one row
    group."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = path if isinstance(path, list) else parquet_files(path)
    try:
        handles = [pq.ParquetFile(f) for f in files]
    except (pa.ArrowException, OSError) as e:
        raise DataUnreadable(f"{path}: unreadable Parquet: {e}") from e
    groups = [(h, f, g, h.metadata.row_group(g).num_rows) for h, f in zip(handles, files, strict=True)
              for g in range(h.num_row_groups)]
    total = sum(rows for *_, rows in groups)
    if columns is not None:
        for h, f in zip(handles, files, strict=True):
            missing = [c for c in columns if c not in h.schema_arrow.names]
            if missing:
                raise SchemaError(f"{f}: column {missing[0]!r} missing (expected columns: {', '.join(columns)})")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(total, size=n, replace=False)) if total > n else np.arange(total)
    pieces = []
    offset = 0
    for handle, file, g, rows in groups:
        lo, hi = np.searchsorted(chosen, [offset, offset + rows])
        if hi > lo:
            try:
                table = handle.read_row_group(g, columns=columns)
            except (pa.ArrowException, OSError) as e:
                raise DataUnreadable(f"{file}: row group {g} unreadable: {e}") from e
            pieces.append(table.take(pa.array(chosen[lo:hi] - offset)))
        offset += rows
    if not pieces:
        return pd.DataFrame(columns=columns or []), total
    return pa.concat_tables(pieces, promote_options="default").to_pandas(), total


def column_kinds(frame: pd.DataFrame, contract: DatasetSpec | None, columns: list[str] | None = None
                 ) -> tuple[list[str], list[str]]:
    """Numerical and categorical columns: from the contract when it names them, inferred otherwise."""
    import pandas as pd

    numerical, categorical = [], []
    for col in columns or list(frame.columns):
        spec = contract.columns.get(col) if contract else None
        if spec is not None:
            if spec.type in ("integer", "float"):
                numerical.append(col)
            elif spec.type in ("categorical", "string", "boolean"):
                categorical.append(col)
            continue
        dtype = frame[col].dtype
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            if not pd.api.types.is_datetime64_any_dtype(dtype):
                categorical.append(col)
        else:
            numerical.append(col)
    return numerical, categorical


def detect_drift(reference: pd.DataFrame, current: pd.DataFrame, numerical: list[str], categorical: list[str],
                 policy: DriftPolicy, rows: dict[str, int] | None = None, report: Path | None = None) -> DriftResult:
    """Evidently's DataDriftPreset on the two samples; per-column verdicts are Evidently's test results."""
    os.environ.setdefault("DO_NOT_TRACK", "true")
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = numerical + categorical
    for side, frame in (("reference", reference), ("current", current)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise SchemaError(f"{side} data: column {missing[0]!r} missing")
    ref, cur = reference[columns].copy(), current[columns].copy()
    for c in categorical:  # one representation on both sides
        ref[c] = ref[c].astype("string")
        cur[c] = cur[c].astype("string")
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    preset = DataDriftPreset(columns=columns, drift_share=policy.drift_share,
                             per_column_method=policy.per_column_method or None,
                             per_column_threshold=policy.per_column_threshold or None)
    snapshot = Report([preset], include_tests=True).run(
        Dataset.from_pandas(cur, data_definition=definition), Dataset.from_pandas(ref, data_definition=definition))
    data = snapshot.dict()
    verdicts = {t["metric_config"]["params"]["column"]: t["status"] == "FAIL" for t in data.get("tests", [])
                if t.get("metric_config", {}).get("params", {}).get("column") is not None}
    result_columns: dict[str, ColumnDrift] = {}
    share = 0.0
    for m in data["metrics"]:
        cfg = m["config"]
        if cfg["type"].endswith("ValueDrift"):
            col = cfg["column"]
            result_columns[col] = ColumnDrift(method=str(cfg["method"]), score=float(m["value"]),
                                              threshold=float(cfg["threshold"]), drift=bool(verdicts.get(col, False)))
        elif cfg["type"].endswith("DriftedColumnsCount"):
            share = m["value"]["share"]
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(report))
    return DriftResult(
        dataset_drift=share >= policy.drift_share,
        drift_share=float(share),
        columns=result_columns,
        rows=rows or {"reference": len(reference), "current": len(current)},
        sampled={"reference": len(ref), "current": len(cur)},
        share_threshold=policy.drift_share,
    )


def drift_between_files(reference: Path, current: Path, contract: DatasetSpec | None, policy: DriftPolicy,
                        columns: list[str] | None = None, report: Path | None = None) -> DriftResult:
    import pyarrow.parquet as pq

    if columns is None:
        ref_names = pq.ParquetFile(parquet_files(reference)[0]).schema_arrow.names
        wanted = contract.features if contract else ref_names
        columns = [c for c in wanted if c in ref_names]
    ref, ref_rows = sample_parquet(reference, columns, policy.sample_rows, policy.seed)
    cur, cur_rows = sample_parquet(current, columns, policy.sample_rows, policy.seed + 1)
    numerical, categorical = column_kinds(ref, contract, columns)
    return detect_drift(ref, cur, numerical, categorical, policy, {"reference": ref_rows, "current": cur_rows}, report)


def unseen_shares(reference: pd.DataFrame, current: pd.DataFrame, categorical: list[str]) -> dict[str, float]:
    """Share of the window's rows whose categorical value never appears in the reference sample."""
    out = {}
    for c in categorical:
        seen = set(reference[c].dropna().astype(str))
        values = current[c].dropna().astype(str)
        out[c] = float((~values.isin(seen)).mean()) if len(values) else 0.0
    return out
