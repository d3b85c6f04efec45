"""``dag.test()`` of ctloop_labels: a good label delivery is stored where the monitor reads it; a bad one
(a label outside the classes, an id twice) is quarantined whole naming the column and fails the run;
no delivery is a skip."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd

from tests.conftest import load_dag

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAY = date(2026, 1, 7)


def _dag():  # type: ignore[no-untyped-def]

    return load_dag("labels")


def _states(run) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _run(dag, day: date):  # type: ignore[no-untyped-def]
    """The run whose data interval is ``day`` (a manual run covers the interval that ended before it)."""
    run = dag.test(logical_date=datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC))
    assert run.data_interval_start.date() == day
    return run


def _deliver(home: Path, day: date, frame: pd.DataFrame, name: str) -> Path:
    target = home / "incoming" / "labels" / f"dt={day}" / f"{name}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(target, index=False)
    return target


def test_good_bad_and_missing_deliveries(airflow_db, ctloop_home: Path) -> None:  # type: ignore[no-untyped-def]
    from ctloop.core.settings import get_settings
    from ctloop.data.predictions import labels_arrived
    from ctloop.data.store import Lake

    dag = _dag()
    when = datetime(2026, 1, 7, tzinfo=UTC)
    good = pd.DataFrame({"request_id": [f"R{i}" for i in range(50)], "label": [i % 2 for i in range(50)],
                         "labeled_at": [when] * 50})
    _deliver(ctloop_home, DAY, good, "crm-export")
    run = _run(dag, DAY)
    assert str(run.state) == "success", _states(run)
    lake = Lake(get_settings().lake_root)
    stored = labels_arrived(lake, DAY, since=DAY)
    assert sorted(stored["request_id"]) == sorted(good["request_id"]) and len(lake.raw_files(DAY)) == 0
    assert len(list((lake.root / "raw_labels" / f"dt={DAY}").glob("batch-*"))) == 1

    bad_day = date(2026, 1, 8)
    bad = good.assign(label=[7] + [0] * 49)
    bad.loc[5, "request_id"] = "R0"
    _deliver(ctloop_home, bad_day, bad, "crm-export")
    failed = _run(dag, bad_day)
    assert str(failed.state) == "failed" and _states(failed)["ingest_labels"] == "failed"
    [result] = (lake.root / "quarantine_labels" / f"dt={bad_day}").glob("*/*.json")
    problems = json.loads(result.read_text())["problems"]
    assert any("'label'" in p and "outside [0, 1]" in p for p in problems)
    assert any("'request_id'" in p and "more than once" in p for p in problems)
    assert labels_arrived(lake, bad_day, since=bad_day).empty, "nothing of a bad delivery is stored"

    skipped = _run(dag, date(2026, 1, 9))
    assert _states(skipped)["ingest_labels"] == "skipped"
