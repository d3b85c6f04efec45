"""Two models in one deployment through the real scheduler (LocalExecutor on SQLite): both ingest and
retrain at once from one DAG factory; then the world of ``alpha`` drifts while ``beta``'s does not. The
drift retrains ``alpha`` only, through ``alpha``'s own Asset; ``beta``'s champion, lake, alias history and
DAG runs are exactly as they were."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, SPEC

pytestmark = pytest.mark.e2e

DAYS = [date(2026, 1, 5) + timedelta(days=i) for i in range(7)]
DRIFT_DAY = date(2026, 1, 12)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    from ctloop.core.settings import Settings
    from ctloop.dev.local_airflow import LocalAirflow, free_port

    root = tmp_path_factory.mktemp("two-models")
    models = root / "models"
    models.mkdir()
    (models / "_defaults.yaml").write_text((SPEC.parent / "_defaults.yaml").read_text())
    for name, seed in (("alpha", 7), ("beta", 11)):
        spec = yaml.safe_load(SPEC.read_text())
        spec["dataset"].pop("name")
        spec["source"] |= {"rows_per_day": 600, "seed": seed}  # 4 training days: above the suite's 2,000 rows
        spec["validation"] = {"suite": "support_escalation_batch"}  # both share the repo's suites
        spec["training"] = {"suite": "support_escalation_training_set", "window_days": 6, "test_days": 2,
                            "min_rows": 1000}
        spec["schedule"] = {"start_date": "2026-01-01"}
        spec["evaluation"] = {**spec["evaluation"], "suites": ["golden"]}  # the loop, not the suites, is under test
        (models / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    settings = Settings(home=root / "ctloop", models_dir=models, project_dir=REPO, schedule_end=DAYS[-1])
    airflow = LocalAirflow.from_settings(settings, port=free_port())
    try:
        airflow.start()
        yield airflow, settings
    finally:
        airflow.stop()


def _champion(settings: Any, model: str) -> str | None:
    from ctloop.core.params import load_params
    from ctloop.registry.mlflow_registry import alias_version, configure_mlflow

    s = settings.for_model(model)
    return alias_version(configure_mlflow(s), load_params(s.spec_path).training.registered_model, "champion")


def _snapshot(settings: Any, model: str) -> dict[str, Any]:
    from ctloop.registry.mlflow_registry import read_history

    s = settings.for_model(model)
    lake = s.lake_root
    return {"champion": _champion(settings, model), "history": read_history(s, model),
            "curated": sorted(p.name for p in (lake / "curated").glob("dt=*") if p.is_dir()),
            "files": sorted(str(p.relative_to(lake)) for p in lake.rglob("*") if p.is_file() and "reports" not in p.parts)}


def test_two_models_ingest_and_retrain_side_by_side(two_models) -> None:  # type: ignore[no-untyped-def]
    airflow, settings = two_models
    flows = [f"{m}__{f}" for m in ("alpha", "beta") for f in ("ingest", "retrain", "monitor")]
    airflow.wait_for_dags(flows)
    for dag_id in flows:
        airflow.unpause(dag_id)
    backfills = [airflow.backfill(f"{m}__ingest", DAYS[0].isoformat(), DAYS[-1].isoformat()) for m in ("alpha", "beta")]
    for b in backfills:  # both at once through one scheduler
        airflow.wait_for_backfill(b, timeout=900)
    for m in ("alpha", "beta"):
        states = {r["logical_date"][:10]: r["state"] for r in airflow.dag_runs(f"{m}__ingest")}
        assert set(states.values()) == {"success"} and len(states) == len(DAYS), (m, states)
        assert len([p for p in (settings.for_model(m).lake_root / "curated").glob("dt=*") if p.is_dir()]) == len(DAYS)

    runs = {m: airflow.trigger(f"{m}__retrain", conf={"reason": f"e2e: first {m}"}) for m in ("alpha", "beta")}
    for m, run_id in runs.items():
        [run] = airflow.wait_for_runs(f"{m}__retrain", 1, timeout=900, run_filter=run_id)
        assert run["state"] == "success", (m, {t["task_id"]: t["state"] for t in airflow.task_instances(f"{m}__retrain", run_id)})
        assert _champion(settings, m) == "1"

    from ctloop.core.audit import audit_log

    entries = audit_log(settings).entries()
    runs_by_model = {e["model"] for e in entries if e["kind"] == "dag_run"}
    assert runs_by_model == {"alpha", "beta"}, "each DAG run outcome is audited under its model"
    assert {e["model"] for e in entries if e["kind"] == "validation"} == {"alpha", "beta"}
    assert [e["kind"] for e in entries if not e.get("model")] == [], "every decision names its model (one chain)"


def test_a_drift_of_one_model_retrains_that_model_only(two_models) -> None:  # type: ignore[no-untyped-def]
    from ctloop.core.params import load_params
    from ctloop.data.store import Lake
    from ctloop.dev.traffic import TrafficSpec, simulate_traffic

    airflow, settings = two_models
    for model, scenario in (("alpha", "covariate_shift"), ("beta", "stable")):
        s = settings.for_model(model)
        simulate_traffic(TrafficSpec(DRIFT_DAY, 1, scenario, DRIFT_DAY, rows_per_day=1000), load_params(s.spec_path),
                         s, Lake(s.lake_root))
    beta_before = _snapshot(settings, "beta")
    retrains_before = {m: {r["dag_run_id"] for r in airflow.dag_runs(f"{m}__retrain")} for m in ("alpha", "beta")}

    monitors = [airflow.backfill(f"{m}__monitor", DRIFT_DAY.isoformat(), DRIFT_DAY.isoformat(), 1) for m in ("alpha", "beta")]
    for b in monitors:
        airflow.wait_for_backfill(b, timeout=600)
    decisions = {m: json.loads((settings.for_model(m).lake_root / "reports" / "monitor" / f"dt={DRIFT_DAY}" /
                                "summary.json").read_text())["decision"] for m in ("alpha", "beta")}
    assert decisions["alpha"]["trigger"] is True, decisions["alpha"]
    assert decisions["beta"]["trigger"] is False, decisions["beta"]

    deadline = time.monotonic() + 600
    new: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        new = [r for r in airflow.dag_runs("alpha__retrain") if r["dag_run_id"] not in retrains_before["alpha"]]
        if new and new[0]["state"] in ("success", "failed"):
            break
        time.sleep(2)
    assert new and new[0]["run_type"] == "asset_triggered" and new[0]["state"] == "success", new
    time.sleep(5)  # a wrongly wired Asset would have queued beta's retrain by now
    assert {r["dag_run_id"] for r in airflow.dag_runs("beta__retrain")} == retrains_before["beta"], \
        "alpha's drift must not schedule beta's retrain"
    assert _snapshot(settings, "beta") == beta_before, "beta's champion, lake and alias history are untouched"

    from ctloop.core.audit import audit_log

    triggers = [e for e in audit_log(settings).entries() if e["kind"] == "drift_trigger"]
    assert triggers and {e["model"] for e in triggers} == {"alpha"}
    listed = json.loads(_models_json(settings))
    rows = {m["name"]: m for m in listed["models"]}
    assert rows["alpha"]["last_drift"]["trigger"] is True and rows["beta"]["last_drift"]["trigger"] is False
    assert rows["beta"]["champion"] == "1"


def _models_json(settings: Any) -> str:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("CTLOOP_PARAMS", "CTLOOP_MODEL")}
    env |= settings.process_env()
    done = subprocess.run([str(Path(sys.executable).with_name("ctloop")), "models", "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout
