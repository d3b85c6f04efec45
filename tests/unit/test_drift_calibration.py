"""Calibrated thresholds and missingness, on generated data with the structure real data has: values
shared by every row of an hour (one reading of the weather per hour) make day-to-day noise cross
Evidently's fixed 0.1; rows that are independent do not. A column's null share jumping is drift
Evidently cannot see (it drops nulls); ctloop's null-share test does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from ctloop.flows.monitor import null_shares
from ctloop.monitoring.calibration import calibrate
from ctloop.monitoring.drift import DriftPolicy, detect_drift


def _days(n_days: int, rows: int, hourly: bool, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for d in range(n_days):
        start = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(days=d)
        hours = rng.integers(0, 24, rows)
        if hourly:  # one value per hour, shared by every row of it, and a day-level swing
            per_hour = rng.normal(rng.normal(0, 0.6), 1, 24)
            value = per_hour[hours]
        else:
            value = rng.normal(0, 1, rows)
        frames.append(pd.DataFrame({"ts": [start + timedelta(hours=int(h)) for h in hours], "x": value,
                                    "c": rng.choice(["a", "b", "c"], rows)}))
    return pd.concat(frames, ignore_index=True)


def test_hour_shared_values_raise_the_threshold_and_independent_rows_keep_the_default() -> None:
    shared = calibrate(_days(8, 600, hourly=True), ["x"], ["c"], "ts")
    independent = calibrate(_days(8, 2000, hourly=False), ["x"], ["c"], "ts")
    assert shared is not None and independent is not None
    assert shared.columns["x"].threshold > 0.2 > shared.columns["x"].default == 0.1
    # independent rows: the day-to-day spread stays within (or at) Evidently's default
    assert independent.columns["x"].default == 0.1 <= independent.columns["x"].threshold < 0.11
    assert len(shared.columns["x"].scores) == 7 and shared.chunks[0] == "2026-03-01"  # at most 7 days, spread
    # the noise a new day of the same world brings no longer reads as drift; a real shift still does
    reference, new_day = _days(8, 600, hourly=True), _days(1, 600, hourly=True, seed=9)
    calibrated = DriftPolicy(per_column_threshold=shared.thresholds())
    shifted = new_day.assign(x=new_day["x"] + 3)
    assert detect_drift(reference, shifted, ["x"], ["c"], calibrated).columns["x"].drift


def test_too_few_days_to_calibrate() -> None:
    assert calibrate(_days(2, 600, hourly=True), ["x"], [], "ts") is None


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(before=st.floats(0, 0.05), after=st.floats(0, 1), n=st.integers(300, 3000))
def test_the_null_share_test_flags_a_real_jump_only(before: float, after: float, n: int) -> None:
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"x": np.where(rng.random(5000) < before, np.nan, 1.0)})
    cur = pd.DataFrame({"x": np.where(rng.random(n) < after, np.nan, 1.0)})
    verdict = null_shares(ref, cur, ["x"], 0.1)["x"]
    measured = verdict["current"] - verdict["reference"]
    if measured < 0.1:
        assert not verdict["drift"]
    if measured >= 0.15:  # far above the level and the noise of a few hundred rows
        assert verdict["drift"]


def test_a_column_going_from_0_to_30_percent_null_with_unchanged_values() -> None:
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 20_000)})
    cur = pd.DataFrame({"x": rng.normal(0, 1, 2_000)})
    cur.loc[rng.random(2_000) < 0.3, "x"] = np.nan
    assert not detect_drift(ref, cur, ["x"], [], DriftPolicy()).columns["x"].drift, "Evidently cannot see it"
    verdict = null_shares(ref, cur, ["x"], 0.1)["x"]
    assert verdict["drift"] and verdict["reference"] == 0 and 0.25 < verdict["current"] < 0.35
