"""Validation of 1M rows x 20 columns with the real GX suite (goal: under 2 s).

Prints: ctloop's validate_frame (BOOLEAN_ONLY for the suite under pandas Copy-on-Write, SUMMARY only for
failed expectations) on a passing and a failing batch, next to running the same suite with GX's SUMMARY
and BOOLEAN_ONLY result formats as GX does by default.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "models" / "support_escalation.yaml"  # the demo model's spec (over models/_defaults.yaml)
sys.path.insert(0, str(REPO / "include"))
from ctloop.core.params import read_spec  # noqa: E402

ROWS = 1_000_000
DAY = date(2026, 1, 5)


def main() -> None:
    from ctloop.core.params import load_params
    from ctloop.core.settings import Settings
    from ctloop.data.simulator import SimulationSpec, simulate_day
    from ctloop.flows.ingest import interval_of
    from ctloop.validation.context import open_context
    from ctloop.validation.run import validate_frame, validation_view
    from ctloop.validation.suite import build_suite

    tmp = Path(tempfile.mkdtemp(prefix="ctloop-bench-"))
    shutil.copytree(REPO / "great_expectations", tmp / "gx", ignore=shutil.ignore_patterns("uncommitted"))
    frame = simulate_day(DAY, SimulationSpec(rows=ROWS))
    rng = np.random.default_rng(0)
    extra = {f"num_{i}": {"type": "float", "min": 0.0} for i in range(4)} | {
        f"cat_{i}": {"type": "categorical"} for i in range(3)}
    for name, spec in extra.items():
        frame[name] = rng.gamma(2, 10, ROWS) if spec["type"] == "float" else rng.choice(["a", "b", "c", "d"], ROWS)
    params_data = read_spec(SPEC)
    params_data["dataset"]["columns"].update(extra)
    params_data["validation"]["suite"] = "bench_20_columns"
    params_data["validation"]["max_rows"] = 2_000_000
    (tmp / "params.yaml").write_text(yaml.safe_dump(params_data))
    params = load_params(tmp / "params.yaml")
    settings = Settings(home=tmp / "home", params=tmp / "params.yaml", gx_dir=tmp / "gx")
    context = open_context(settings)
    build_suite(context, frame.sample(50_000, random_state=0), params)
    interval = interval_of(DAY)
    print(f"batch: {len(frame):,} rows x {frame.shape[1]} columns; suite: "
          f"{len(context.suites.get('bench_20_columns').expectations)} expectations")

    def timed(label: str, fn) -> object:  # type: ignore[no-untyped-def]
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t)
        print(f"{label:<58} {best:6.2f} s (best of 3)")
        return out

    report = timed("ctloop validate_frame, passing batch", lambda: validate_frame(frame, params, context, interval))
    assert report.success, report.summary()  # type: ignore[attr-defined]
    bad = frame.copy()
    bad.loc[bad.index[:5000], "prior_contacts_30d"] = -1
    bad.loc[bad.index[:30000], "channel"] = "fax"
    report = timed("ctloop validate_frame, failing batch (2 failures, detailed)",
                   lambda: validate_frame(bad, params, context, interval))
    print("   ->", report.summary()[:160])  # type: ignore[attr-defined]

    definition = context.validation_definitions.get("bench_20_columns")
    from ctloop.validation.run import _naive_utc

    p = {"interval_start": _naive_utc(interval[0]), "interval_end": _naive_utc(interval[1])}
    # GX's SUMMARY format on the whole suite takes minutes at 1M rows here; compare at 100k rows
    small = validation_view(frame.head(100_000))
    timed("GX run, SUMMARY format for every expectation, 100k rows",
          lambda: definition.run(batch_parameters={"dataframe": small}, expectation_parameters=p, result_format="SUMMARY"))
    timed("GX run, BOOLEAN_ONLY format, 100k rows",
          lambda: definition.run(batch_parameters={"dataframe": small}, expectation_parameters=p, result_format="BOOLEAN_ONLY"))
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
