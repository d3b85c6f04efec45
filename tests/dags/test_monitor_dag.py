"""``dag.test()`` of ctloop_monitor: a drifted window emits the drift Asset event with its evidence; a corrupt
partition fails the collect task naming the file and emits nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import load_dag

T0 = date(2026, 4, 6)


@pytest.fixture
def monitor_setup(airflow_db, use_params, ctloop_home: Path):  # type: ignore[no-untyped-def]
    use_params(training={"min_rows": 1000})

    from ctloop.core.params import get_params
    from ctloop.core.settings import get_settings
    from ctloop.data.simulator import SimulationSpec, simulate_day
    from ctloop.data.store import Lake
    from ctloop.dev.traffic import TrafficSpec, simulate_traffic
    from ctloop.flows.promotion import promote_version
    from ctloop.flows.retrain import describe_trigger, evaluate, gate, prepare, train

    settings, params = get_settings(), get_params()
    lake = Lake(settings.lake_root)
    for i in range(1, 9):
        d = T0 - timedelta(days=i)
        lake.write_curated(d, simulate_day(d, SimulationSpec(rows=1000)), {"rows": 1000})
    data = ctloop_home / "ts"
    prepare(params, lake, T0, 8, data, describe_trigger(None, "fixture", None))
    trained = train(params, settings, data)
    evaluate(params, settings, data, trained.version, trained.run_id)
    gate(params, settings, data / "evaluation.json")
    promote_version(params, settings, trained.version, "fixture champion")
    simulate_traffic(TrafficSpec(T0, 2, "covariate_shift", T0 + timedelta(days=1), rows_per_day=1500),
                     params, settings, lake)
    return load_dag("monitor"), lake


def _run(dag, day: date):  # type: ignore[no-untyped-def]
    run = dag.test(logical_date=datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC))
    assert run.data_interval_start.date() == day
    return run, {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_quiet_window_skips_the_event_and_a_drifted_one_emits_it(monitor_setup) -> None:  # type: ignore[no-untyped-def]
    dag, lake = monitor_setup
    run, states = _run(dag, T0)
    assert str(run.state) == "success" and states["emit_drift_event"] == "skipped", states
    assert (lake.root / "reports" / "monitor" / f"dt={T0}" / "report.html").exists()

    run, states = _run(dag, T0 + timedelta(days=1))
    assert str(run.state) == "success" and states["emit_drift_event"] == "success", states
    ti = next(t for t in run.get_task_instances() if t.task_id == "emit_drift_event")
    extra = ti.xcom_pull(task_ids="emit_drift_event")
    assert extra["window"] == (T0 + timedelta(days=1)).isoformat()
    assert {"message_length", "product_area"} <= set(extra["drifted_columns"])
    assert any(r.startswith("data drift") for r in extra["reasons"]) and Path(extra["report"]).exists()


def test_corrupt_partition_fails_naming_the_file_and_triggers_nothing(monitor_setup) -> None:  # type: ignore[no-untyped-def]
    dag, lake = monitor_setup
    bad = lake.partition("predictions", T0) / "hour=23" / "broken.parquet"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"PAR1 garbage")
    run, states = _run(dag, T0)
    assert str(run.state) == "failed"
    assert states["collect_window"] == "failed" and states["emit_drift_event"] == "upstream_failed"
    from ctloop.core.errors import DataUnreadable
    from ctloop.core.params import get_params
    from ctloop.data.store import Lake
    from ctloop.flows.monitor import collect_window

    with pytest.raises(DataUnreadable, match=r"broken\.parquet"):
        collect_window(Lake(lake.root), get_params(), T0)


def test_schema_changed_partition_names_the_column(monitor_setup) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    from ctloop.core.errors import SchemaError
    from ctloop.core.params import get_params
    from ctloop.flows.monitor import collect_window

    _, lake = monitor_setup
    f = sorted(lake.partition("predictions", T0).glob("hour=*/*.parquet"))[0]
    pd.read_parquet(f).rename(columns={"sentiment": "sentiment_score"}).to_parquet(f)
    with pytest.raises(SchemaError, match=rf"{f.name}: prediction log partition lacks column 'sentiment'"):
        collect_window(lake, get_params(), T0)
