"""The training set: a window of curated partitions, split by time.

The window is the ``window_days`` calendar days before the as-of date; only curated partitions count
(quarantined days are simply absent). The most recent ``test_days`` curated days are the test set and are
never shuffled into training.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.core.errors import InsufficientData

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.core.params import Params
    from ctloop.data.store import Lake


@dataclass(frozen=True)
class TrainingWindow:
    start: date  # inclusive
    end: date  # exclusive (the as-of date)
    train_days: tuple[date, ...]
    test_days: tuple[date, ...]

    def describe(self) -> str:
        return f"[{self.start}, {self.end})"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: ([x.isoformat() for x in v] if isinstance(v, tuple) else v.isoformat()) for k, v in d.items()}


def select_window(curated: list[date], as_of: date, window_days: int, test_days: int) -> TrainingWindow:
    """Pure: which curated days train and which test, for a window ending (exclusive) at ``as_of``."""
    start = as_of - timedelta(days=window_days)
    days = sorted(d for d in curated if start <= d < as_of)
    window = f"[{start}, {as_of})"
    if len(days) <= test_days:
        raise InsufficientData(
            f"training window {window} holds {len(days)} curated day(s); need more than {test_days} "
            f"(training.test_days) so that some days are left to train on")
    return TrainingWindow(start, as_of, tuple(days[:-test_days]), tuple(days[-test_days:]))


def latest_as_of(curated: list[date], reference: date) -> date:
    """The as-of date for a run that is not tied to a data interval: the day after the newest curated
    partition on or before ``reference``."""
    eligible = [d for d in curated if d <= reference]
    if not eligible:
        raise InsufficientData(f"no curated partition on or before {reference}: nothing to train on")
    return max(eligible) + timedelta(days=1)


def check_training_frame(frame: pd.DataFrame, params: Params, window: TrainingWindow, part: str) -> None:
    target = params.dataset.target
    minimum = params.training.min_rows if part == "train" else 1
    if len(frame) < minimum:
        raise InsufficientData(
            f"training window {window.describe()}: {part} set has {len(frame)} rows, fewer than {minimum} "
            f"(training.min_rows); no model trained")
    classes = sorted(frame[target].dropna().unique().tolist())
    if len(classes) < 2:
        raise InsufficientData(
            f"training window {window.describe()}: {part} set has a single class {classes} in {target!r}; "
            f"no model trained")


def build_training_set(lake: Lake, params: Params, as_of: date, window_days: int | None = None
                       ) -> tuple[pd.DataFrame, pd.DataFrame, TrainingWindow]:
    window = select_window(lake.curated_days(), as_of, window_days or params.training.window_days,
                           params.training.test_days)
    train = lake.read_curated(list(window.train_days))
    test = lake.read_curated(list(window.test_days))
    check_training_frame(train, params, window, "train")
    check_training_frame(test, params, window, "test")
    return train, test, window


def write_training_set(directory: Path, train: pd.DataFrame, test: pd.DataFrame, window: TrainingWindow,
                       extra: dict[str, Any] | None = None) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    train.to_parquet(directory / "train.parquet", index=False)
    test.to_parquet(directory / "test.parquet", index=False)
    info = {"window": window.to_dict(), "train_rows": len(train), "test_rows": len(test),
            "dir": str(directory)} | (extra or {})
    (directory / "window.json").write_text(json.dumps(info, indent=2, default=str))
    return info


def read_training_set(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    import pandas as pd

    from ctloop.core.errors import DataUnreadable

    info_file = directory / "window.json"
    if not info_file.exists():
        raise DataUnreadable(f"{info_file}: training set not found (run `ctloop prepare` first)")
    return (pd.read_parquet(directory / "train.parquet"), pd.read_parquet(directory / "test.parquet"),
            json.loads(info_file.read_text()))
