"""The prediction log and delayed labels: the contract ``ctloop serve`` and ``ctloop simulate traffic`` write
and ``<model>__monitor`` reads.

- ``predictions/dt=YYYY-MM-DD/hour=HH/*.parquet``: ``request_id``, ``ts``, ``model_name``, ``model_version``,
  ``route`` (champion/canary/shadow), every feature as received, ``prediction``, ``score``, ``latency_ms``.
- ``labels/dt=YYYY-MM-DD/*.parquet`` (``dt`` = the day the labels arrived): ``request_id``, ``label``,
  ``labeled_at``.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.core.errors import DataUnreadable, SchemaError

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.core.params import DatasetSpec
    from ctloop.data.store import Lake

# the log's route column: who answered (a shadow row repeats a request another route answered)
CHAMPION_ROUTE, CANARY_ROUTE, SHADOW_ROUTE = "champion", "canary", "shadow"
LOG_COLUMNS = ("request_id", "ts", "model_name", "model_version", "route")
OUTCOME_COLUMNS = ("prediction", "score", "latency_ms")
LABEL_COLUMNS = ("request_id", "label", "labeled_at")


def expected_log_columns(contract: DatasetSpec) -> list[str]:
    """The log's columns: a multiclass model's rows also carry every class's probability (``proba_<c>``)."""
    from ctloop.core.task import proba_columns

    extra = proba_columns(contract.classes) if contract.task == "multiclass" else []
    return [*LOG_COLUMNS, *contract.features, *OUTCOME_COLUMNS, *extra]


def write_predictions(lake: Lake, frame: pd.DataFrame, name: str) -> list[Path]:
    """Write one file per hour partition under ``predictions/dt=…/hour=…/<name>.parquet`` (a re-run with the
    same name replaces its files: no duplicates). All or nothing: every file is written aside first and
    renamed into place only when all are, so a failed write (a full disk) leaves nothing behind."""
    ts = frame["ts"]
    staged: list[tuple[Path, Path]] = []
    try:
        for (day, hour), part in frame.groupby([ts.dt.date, ts.dt.hour], sort=True):
            target = lake.partition("predictions", day) / f"hour={hour:02d}" / f"{name}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".parquet.tmp")
            staged.append((tmp, target))
            part.to_parquet(tmp, index=False)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, target in staged:
        tmp.replace(target)
    return [target for _, target in staged]


def write_dead_letters(lake: Lake, rows: list[dict[str, Any]], reason: str, name: str) -> Path:
    """Rows the prediction log could not store, kept as JSON lines with the reason, under
    ``dead_letter/predictions/`` (never read by the monitor; for a person to look at)."""
    import json

    target = lake.root / "dead_letter" / "predictions" / f"{name}.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a") as fh:
        for row in rows:
            fh.write(json.dumps({"reason": reason, "row": row}, default=str) + "\n")
    return target


def write_labels(lake: Lake, labels: pd.DataFrame, name: str) -> list[Path]:
    """One file per arrival day under ``labels/dt=…/<name>.parquet`` (a re-run with the same name replaces
    its files), written aside and renamed into place."""
    written = []
    for day, part in labels.groupby(labels["labeled_at"].dt.date, sort=True):
        target = lake.partition("labels", day) / f"{name}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".parquet.tmp")
        part[list(LABEL_COLUMNS)].to_parquet(tmp, index=False)
        tmp.replace(target)
        written.append(target)
    return written


def check_labels(frame: pd.DataFrame, contract: DatasetSpec, id_column: str = "request_id",
                 label_column: str = "label", time_column: str = "labeled_at",
                 arrived: datetime | None = None) -> tuple[pd.DataFrame, list[str]]:
    """A label delivery against the labels contract: the id and label columns present, every id a
    non-empty text, every label one of ``dataset.classes``, no id twice, arrival times (optional; the
    arrival day's start otherwise) that parse and fit the log's range. (the labels in contract form,
    the problems: one line each, naming the column and examples); any problem rejects the delivery."""
    import numpy as np
    import pandas as pd

    problems: list[str] = []
    for role, column in (("id", id_column), ("label", label_column)):
        if column not in frame.columns:
            return frame.iloc[0:0], [f"column {column!r} (the {role}) is missing; found {', '.join(map(str, frame.columns))}"]
    ids = frame[id_column]
    bad_ids = ids.isna() | (ids.astype(str).str.strip() == "")
    if bad_ids.any():
        problems.append(f"column {id_column!r}: {int(bad_ids.sum())} empty id(s)")
    labels = pd.to_numeric(frame[label_column], errors="coerce")
    if contract.is_classifier:
        outside, domain = labels.isna() | ~labels.isin(contract.classes), str(contract.classes)
    else:  # a regression label: a finite number
        outside, domain = labels.isna() | ~np.isfinite(labels.astype("float64")), "finite numbers"
    if outside.any():
        shown = frame.loc[outside, label_column].astype(str).head(5).tolist()
        problems.append(f"column {label_column!r}: {int(outside.sum())} label(s) outside {domain}, e.g. {shown}")
    dupes = ids[ids.duplicated(keep=False)].astype(str)
    if len(dupes):
        problems.append(f"column {id_column!r}: {dupes.nunique()} id(s) labeled more than once, e.g. "
                        f"{sorted(dupes.unique())[:5]}")
    if time_column in frame.columns:
        when = pd.to_datetime(frame[time_column], utc=True, errors="coerce", format="ISO8601") \
            if frame[time_column].dtype == object else pd.to_datetime(frame[time_column], utc=True, errors="coerce")
        unreadable = when.isna() & frame[time_column].notna()
        if unreadable.any():
            problems.append(f"column {time_column!r}: {int(unreadable.sum())} time(s) that do not parse or lie "
                            f"outside the log's range")
        when = when.fillna(pd.Timestamp(arrived) if arrived is not None else pd.Timestamp.now(tz="UTC"))
    else:
        when = pd.Series(pd.Timestamp(arrived) if arrived is not None else pd.Timestamp.now(tz="UTC"),
                         index=frame.index)
    clean = pd.DataFrame({"request_id": ids.astype(str),
                          "label": labels.astype("Int64" if contract.is_classifier else "float64"),
                          "labeled_at": pd.to_datetime(when, utc=True)})
    return clean, problems


def prediction_files(lake: Lake, day: date) -> list[Path]:
    part = lake.partition("predictions", day)
    return sorted(part.glob("hour=*/*.parquet")) if part.exists() else []


def log_rows(files: list[Path], contract: DatasetSpec) -> int:
    """Rows in prediction-log files, from their Parquet footers; a corrupt or schema-changed file fails
    naming the file (and the missing column)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    expected = expected_log_columns(contract)
    rows = 0
    for f in files:
        try:
            meta = pq.ParquetFile(f)
        except (pa.ArrowException, OSError) as e:
            raise DataUnreadable(f"{f}: unreadable prediction log partition: {e}") from e
        missing = [c for c in expected if c not in meta.schema_arrow.names]
        if missing:
            raise SchemaError(f"{f}: prediction log partition lacks column {missing[0]!r} "
                              f"(expected {', '.join(expected)})")
        rows += meta.metadata.num_rows
    return rows


def read_predictions(lake: Lake, day: date, contract: DatasetSpec) -> pd.DataFrame:
    """The day's logged predictions (checked by :func:`log_rows` first)."""
    import pandas as pd

    files = prediction_files(lake, day)
    log_rows(files, contract)
    expected = expected_log_columns(contract)
    frames = [pd.read_parquet(f, columns=expected) for f in files]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=expected)


def prediction_files_since(lake: Lake, since: datetime) -> list[Path]:
    """Prediction-log files written at or after ``since`` (wall clock, from the files' mtimes), whatever
    event day they are partitioned under: what a server logged during a rollout step."""
    floor = since.timestamp()
    base = lake.root / "predictions"
    if not base.exists():
        return []
    return [f for hour in base.glob("dt=*/hour=*") if hour.stat().st_mtime >= floor
            for f in sorted(hour.glob("*.parquet")) if f.stat().st_mtime >= floor]


def predictions_written_since(lake: Lake, since: datetime, contract: DatasetSpec) -> pd.DataFrame:
    """The rows of :func:`prediction_files_since` (checked by :func:`log_rows` first). A flush that
    straddles ``since`` brings its few earlier rows along."""
    import pandas as pd

    files = prediction_files_since(lake, since)
    log_rows(files, contract)
    expected = expected_log_columns(contract)
    frames = [pd.read_parquet(f, columns=expected) for f in files]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=expected)


def labels_arrived(lake: Lake, until: date, since: date | None = None) -> pd.DataFrame:
    """The labels that arrived on days ``since``..``until`` (every day up to ``until`` when ``since`` is None:
    callers on a hot path bound it)."""
    import pandas as pd

    base = lake.root / "labels"
    days = [d for d in (base.iterdir() if base.exists() else []) if d.name.startswith("dt=")]
    files = sorted(p for d in days if (since is None or date.fromisoformat(d.name[3:]) >= since)
                   and date.fromisoformat(d.name[3:]) <= until for p in d.glob("*.parquet"))
    if not files:
        return pd.DataFrame(columns=list(LABEL_COLUMNS))
    labels = pd.concat([pd.read_parquet(f, columns=list(LABEL_COLUMNS)) for f in files], ignore_index=True)
    # a request labeled twice (a client retrying /feedback, a correction) counts once: its latest label
    return labels.sort_values("labeled_at", kind="stable").drop_duplicates("request_id", keep="last") \
        .reset_index(drop=True)


def label_rows(lake: Lake, day: date) -> int:
    """Labels that arrived on ``day``, from Parquet footers."""
    import pyarrow.parquet as pq

    part = lake.partition("labels", day)
    return sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(part.glob("*.parquet"))) if part.exists() else 0
