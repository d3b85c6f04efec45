"""ctloop_retrain on 1M training rows through the real Airflow scheduler (LocalExecutor, SQLite).

Prints wall time per task, the gap between consecutive tasks (scheduling + process start-up), and the
orchestration overhead as a share of the run (goal: <= 15%). Curated partitions are written straight
into a scratch lake (ingestion is not what this measures)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "include"))
sys.path.insert(0, str(REPO))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

TRAIN_ROWS = 1_000_000
DAYS = 14
TEST_DAYS = 2


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def main() -> None:
    from ctloop.core.settings import Settings
    from ctloop.data.simulator import SimulationSpec, simulate_day
    from ctloop.data.store import Lake
    from ctloop.dev.local_airflow import LocalAirflow, free_port
    from tests.conftest import write_params

    tmp = Path(tempfile.mkdtemp(prefix="ctloop-bench-retrain-"))
    rows_per_day = TRAIN_ROWS // (DAYS - TEST_DAYS)
    days = [date(2026, 1, 5) + timedelta(days=i) for i in range(DAYS)]
    params = write_params(tmp / "params.yaml", source={"rows_per_day": rows_per_day},
                          validation={"max_rows": 5_000_000}, training={"window_days": DAYS, "test_days": TEST_DAYS})
    settings = Settings(home=tmp / "home", params=params, project_dir=REPO, schedule_end=days[-1])
    lake = Lake(settings.lake_root)
    t = time.perf_counter()
    for d in days:
        frame = simulate_day(d, SimulationSpec(rows=rows_per_day))
        lake.write_curated(d, frame, {"rows": len(frame)})
    print(f"curated data: {DAYS} days x {rows_per_day:,} rows = {rows_per_day * (DAYS - TEST_DAYS):,} training rows "
          f"(written in {time.perf_counter() - t:.0f}s)")

    airflow = LocalAirflow.from_settings(settings, port=free_port())
    with airflow:
        airflow.wait_for_dags(["support_escalation__retrain"])
        airflow.unpause("support_escalation__retrain")
        run_id = airflow.trigger("support_escalation__retrain", conf={"reason": "benchmark"})
        [run] = airflow.wait_for_runs("support_escalation__retrain", 1, timeout=1800, run_filter=run_id)
        tis = sorted(airflow.task_instances("support_escalation__retrain", run_id), key=lambda ti: ti["start_date"] or "")
    print(f"run {run_id}: {run['state']}")
    run_start, run_end = _ts(run["start_date"]), _ts(run["end_date"])
    total = (run_end - run_start).total_seconds()
    busy = 0.0
    previous_end = run_start
    print(f"{'task':<24}{'state':<10}{'wall s':>8}{'gap before s':>14}")
    for ti in tis:
        if not ti["start_date"]:
            print(f"{ti['task_id']:<24}{ti['state']:<10}")
            continue
        start, end = _ts(ti["start_date"]), _ts(ti["end_date"])
        wall = (end - start).total_seconds()
        gap = (start - previous_end).total_seconds()
        busy += wall
        previous_end = max(previous_end, end)
        print(f"{ti['task_id']:<24}{ti['state']:<10}{wall:8.1f}{gap:14.2f}")
    overhead = total - busy
    print(f"run wall time {total:.1f}s; task time {busy:.1f}s; orchestration overhead {overhead:.1f}s "
          f"= {overhead / total:.1%} of the run (goal <= 15%)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
