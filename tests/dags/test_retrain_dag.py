"""``dag.test()`` of ctloop_retrain against a real MLflow SQLite store and real curated data."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.conftest import load_dag

DAYS = [date(2026, 1, 5) + timedelta(days=i) for i in range(8)]


@pytest.fixture
def retrain_dag(airflow_db, use_params, ctloop_home: Path):  # type: ignore[no-untyped-def]
    use_params(source={"rows_per_day": 500}, training={"min_rows": 1000, "window_days": 10})
    return _ingested_retrain_dag()


@pytest.fixture
def forest_retrain_dag(airflow_db, use_params, ctloop_home: Path):  # type: ignore[no-untyped-def]
    """The team's own estimator in params.yaml: the form's Model offers (and defaults to) custom."""
    use_params(source={"rows_per_day": 500}, training={
        "min_rows": 1000, "window_days": 10, "model": "custom",
        "estimator": {"class": "sklearn.ensemble.ExtraTreesClassifier", "params": {"min_samples_leaf": 5}}})
    return _ingested_retrain_dag()


def _ingested_retrain_dag():  # type: ignore[no-untyped-def]

    from ctloop.core.params import get_params
    from ctloop.core.settings import get_settings
    from ctloop.data.store import Lake
    from ctloop.flows.ingest import ingest_day
    from ctloop.validation.context import open_context

    settings, params = get_settings(), get_params()
    context = open_context(settings)
    for d in DAYS:
        assert ingest_day(d, params, Lake(settings.lake_root), context).status == "curated"
    return load_dag("retrain")


def _states(run) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_first_run_promotes_and_a_weaker_model_is_rejected(retrain_dag) -> None:  # type: ignore[no-untyped-def]
    from ctloop.core.params import get_params
    from ctloop.core.settings import get_settings
    from ctloop.registry.mlflow_registry import configure_mlflow, gate_decision_of, registry_status

    run = retrain_dag.test(run_conf={"reason": "first model"})
    assert str(run.state) == "success", _states(run)
    assert _states(run)["promote"] == "success"
    client = configure_mlflow(get_settings())
    name = get_params().training.registered_model
    status = registry_status(client, name)
    assert status["champion"]["version"] == "1"
    mlflow_run = client.get_run(status["champion"]["run_id"])
    assert mlflow_run.data.tags["ctloop.trigger"] == "manual"
    assert mlflow_run.data.tags["ctloop.trigger_reason"] == "first model"
    assert mlflow_run.data.tags["ctloop.airflow.dag_id"] == "support_escalation__retrain"
    assert mlflow_run.data.tags["ctloop.gate_passed"] == "true"
    assert {"roc_auc", "f1_score", "log_loss", "brier_score", "precision_score", "recall_score"} <= set(mlflow_run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(mlflow_run.info.run_id)}
    assert {"gate", "reference", "evaluation", "suites", "lineage"} <= artifacts
    # every evaluation suite ran on the challenger and is a line of the gate's decision
    assert {"suite.golden_pass_rate", "suite.adversarial_crashes", "suite.latency_p99_ms"} <= set(mlflow_run.data.metrics)
    assert mlflow_run.data.metrics["suite.adversarial_crashes"] == 0
    checks = gate_decision_of(client, name, "1")["reasons"]
    assert any(r.startswith("golden:") for r in checks) and any(r.startswith("adversarial:") for r in checks)

    weak = retrain_dag.test(run_conf={"reason": "try a stump", "model": "hist_gradient_boosting",
                                      "hyperparameters": {"max_iter": 1, "max_depth": 1, "learning_rate": 0.01}})
    states = _states(weak)
    assert str(weak.state) == "success", states  # a rejection is a normal outcome
    assert states["gate"] == "success" and states["promote"] == "skipped"
    status = registry_status(client, name)
    assert status["champion"]["version"] == "1", "the champion is untouched"
    rejected = client.get_model_version(name, "2")
    decision = gate_decision_of(client, name, rejected.version)
    assert decision["passed"] is False and decision["champion"] == "1"
    assert any("roc_auc" in r for r in decision["reasons"])


def test_manual_run_without_reason_fails_and_trains_nothing(retrain_dag) -> None:  # type: ignore[no-untyped-def]
    from ctloop.core.params import get_params
    from ctloop.core.settings import get_settings
    from ctloop.registry.mlflow_registry import configure_mlflow

    run = retrain_dag.test(run_conf={"reason": "  "})
    assert str(run.state) == "failed" and _states(run)["build_training_set"] == "failed"
    client = configure_mlflow(get_settings())
    assert client.search_registered_models(f"name = '{get_params().training.registered_model}'") == []


def test_the_form_trains_the_team_estimator_with_its_hyperparameter_overrides(forest_retrain_dag) -> None:  # type: ignore[no-untyped-def]
    from ctloop.core.params import get_params
    from ctloop.core.settings import get_settings
    from ctloop.registry.mlflow_registry import configure_mlflow, gate_decision_of, registry_status

    form = forest_retrain_dag.params
    assert form["model"] == "custom" and "custom" in form.get_param("model").schema["enum"]
    run = forest_retrain_dag.test(run_conf={"reason": "the team's forest", "hyperparameters": {"n_estimators": 25}})
    assert str(run.state) == "success", _states(run)
    client = configure_mlflow(get_settings())
    name = get_params().training.registered_model
    decision = gate_decision_of(client, name, "1")  # judged like any model: the verdict is not this test's point
    assert registry_status(client, name)["champion"] is not None or not decision["passed"]
    assert not any("crashed" in r for r in decision["reasons"]), decision["reasons"]  # forests and huge numbers
    data = client.get_run(client.get_model_version(name, "1").run_id).data
    assert data.params["estimator.class"] == "sklearn.ensemble.ExtraTreesClassifier"
    assert data.params["estimator.min_samples_leaf"] == "5" and data.params["hp.n_estimators"] == "25"
    assert data.tags["ctloop.model"] == "ExtraTreesClassifier"
    assert data.tags["ctloop.lineage.code.sklearn.ensemble._forest.sha256"].endswith(")")  # (scikit-learn==...)
