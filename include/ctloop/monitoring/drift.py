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
            continue  # text: judged on its descriptors (ctloop.monitoring.text), not as a category
        dtype = frame[col].dtype
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            if not pd.api.types.is_datetime64_any_dtype(dtype):
                categorical.append(col)
        else:
            numerical.append(col)
    return numerical, categorical


def detect_drift(reference: pd.DataFrame, current: pd.DataFrame, numerical: list[str], categorical: list[str],
                 policy: DriftPolicy, rows: dict[str, int] | None = None, report: Path | None = None,
                 outputs: list[str] | None = None) -> DriftResult:
    """Evidently's DataDriftPreset on the two samples' features; per-column verdicts are Evidently's test
    results. ``outputs`` (the model's score) are numerical columns judged beside the features but outside
    the dataset's drift share, as ctloop's decision counts them, so the report and the decision agree."""
    os.environ.setdefault("DO_NOT_TRACK", "true")
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    outputs = outputs or []
    features = [c for c in numerical + categorical if c not in outputs]
    columns = features + outputs
    for side, frame in (("reference", reference), ("current", current)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise SchemaError(f"{side} data: column {missing[0]!r} missing")
    ref, cur = reference[columns].copy(), current[columns].copy()
    for c in categorical:  # one representation on both sides
        ref[c] = ref[c].astype("string")
        cur[c] = cur[c].astype("string")
    definition = DataDefinition(numerical_columns=[c for c in numerical if c in columns] +
                                [c for c in outputs if c not in numerical], categorical_columns=categorical)
    feature_methods = {c: m for c, m in policy.per_column_method.items() if c in features}
    feature_thresholds = {c: v for c, v in policy.per_column_threshold.items() if c in features}
    preset = DataDriftPreset(columns=features, drift_share=policy.drift_share,
                             per_column_method=feature_methods or None,
                             per_column_threshold=feature_thresholds or None)
    output_metrics = [ValueDrift(column=c, method=policy.per_column_method.get(c),
                                 threshold=policy.per_column_threshold.get(c)) for c in outputs]
    snapshot = Report([preset, *output_metrics], include_tests=True).run(
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
            method, score, threshold = str(cfg["method"]), float(m["value"]), float(cfg["threshold"])
            # Evidently's own test where it ran one; the same rule where it did not (an output's ValueDrift)
            verdict = verdicts.get(col)
            if verdict is None:
                verdict = score < threshold if "p_value" in method else score >= threshold
            result_columns[col] = ColumnDrift(method=method, score=score, threshold=threshold, drift=bool(verdict))
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


def choose_columns(reference: list[str], current: list[str], contract: DatasetSpec | None,
                   exclude: list[str] | None = None) -> tuple[list[str], str]:
    """What ``ctloop drift`` compares, and why: the contract's features when both files carry every one of
    them; otherwise every column the two files share (a file that happens to share one column name with the
    contract is not judged on that one column)."""
    common = [c for c in reference if c in current and c not in (exclude or [])]
    if contract is not None and all(f in reference and f in current for f in contract.features):
        return list(contract.features), f"the contract's {len(contract.features)} features (both files carry them)"
    return common, f"every column the two files share ({len(common)}; they do not carry the contract's features)"


def drift_between_files(reference: Path, current: Path, contract: DatasetSpec | None, policy: DriftPolicy,
                        columns: list[str] | None = None, report: Path | None = None,
                        calibrate_by: str | None = None, k: float = 3.0) -> tuple[DriftResult, Any]:
    """Drift between two datasets; with ``calibrate_by`` (a timestamp column of the reference) each column's
    threshold is calibrated on the reference's days first (:mod:`ctloop.monitoring.calibration`)."""
    from dataclasses import replace

    if columns is None:
        columns, _ = choose_columns(parquet_columns(reference), parquet_columns(current), contract)
    read = [*columns, calibrate_by] if calibrate_by and calibrate_by not in columns else columns
    ref, ref_rows = sample_parquet(reference, read, policy.sample_rows, policy.seed)
    cur, cur_rows = sample_parquet(current, columns, policy.sample_rows, policy.seed + 1)
    numerical, categorical = column_kinds(ref[columns], contract, columns)
    calibration = None
    if calibrate_by is not None:
        from ctloop.monitoring.calibration import calibrate

        calibration = calibrate(ref, numerical, categorical, calibrate_by, policy.per_column_threshold, k)
        if calibration is not None:
            policy = replace(policy, per_column_threshold=calibration.thresholds() | policy.per_column_threshold)
    result = detect_drift(ref[columns], cur, numerical, categorical, policy,
                          {"reference": ref_rows, "current": cur_rows}, report)
    return result, calibration


def unseen_shares(reference: pd.DataFrame, current: pd.DataFrame, categorical: list[str]) -> dict[str, float]:
    """Share of the window's rows whose categorical value never appears in the reference sample."""
    out = {}
    for c in categorical:
        seen = set(reference[c].dropna().astype(str))
        values = current[c].dropna().astype(str)
        out[c] = float((~values.isin(seen)).mean()) if len(values) else 0.0
    return out
