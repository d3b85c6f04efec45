"""``dag.test()`` of ctloop_approve and ctloop_rollback (and ctloop_retrain in manual promotion mode)
against a real MLflow SQLite registry."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from tests.conftest import gate_version, load_dag, version_with_run

DAGS = Path(__file__).resolve().parents[2] / "dags"


def _dag(name: str):  # type: ignore[no-untyped-def]
    return load_dag(name)


def _states(run) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_rollback_dag_restores_previous_and_refuses_without_fallback(airflow_db, ctloop_home: Path) -> None:  # type: ignore[no-untyped-def]
    from ctloop.core.params import get_params
    from ctloop.core.settings import get_settings
    from ctloop.flows.promotion import promote_version
    from ctloop.registry.mlflow_registry import (
        CHAMPION,
        PREVIOUS,
        alias_version,
        configure_mlflow,
        read_history,
    )

    settings, params = get_settings(), get_params()
    client = configure_mlflow(settings)
    name = params.training.registered_model
    client.create_registered_model(name)
    champion = None
    for v in ("1", "2"):
        version_with_run(client, name, f"file:///nonexistent/v{v}")
        gate_version(client, name, v, True, champion, ["ok"])
        promote_version(params, settings, v, f"v{v}", expected_champion=champion)
        champion = v
    dag = _dag("rollback")
    run = dag.test(run_conf={"version": "previous", "reason": "error rate doubled"})
    assert str(run.state) == "success", _states(run)
    assert alias_version(client, name, CHAMPION) == "1" and alias_version(client, name, PREVIOUS) is None
    last = read_history(settings, name)[-1]
    assert last["kind"] == "rollback" and last["reason"] == "error rate doubled"
    assert last["dag_run"].startswith("support_escalation__rollback/")
    again = dag.test(run_conf={"version": "previous", "reason": "again"})
    assert str(again.state) == "failed", "no @previous left: refused, champion untouched"
    assert alias_version(client, name, CHAMPION) == "1"


def test_manual_mode_retrain_waits_for_the_approve_dag(airflow_db, use_params, ctloop_home: Path) -> None:  # type: ignore[no-untyped-def]
    use_params(source={"rows_per_day": 500}, training={"min_rows": 1000, "window_days": 10},
               promotion={"mode": "manual"})
    from ctloop.core.params import get_params
    from ctloop.core.settings import get_settings
    from ctloop.data.store import Lake
    from ctloop.flows.ingest import ingest_day
    from ctloop.registry.mlflow_registry import CANDIDATE, CHAMPION, alias_version, configure_mlflow
    from ctloop.validation.context import open_context

    settings, params = get_settings(), get_params()
    context = open_context(settings)
    for d in [date(2026, 1, 5) + timedelta(days=i) for i in range(8)]:
        assert ingest_day(d, params, Lake(settings.lake_root), context).status == "curated"
    run = _dag("retrain").test(run_conf={"reason": "manual mode"})
    assert str(run.state) == "success", _states(run)
    client = configure_mlflow(settings)
    name = params.training.registered_model
    assert alias_version(client, name, CANDIDATE) == "1" and alias_version(client, name, CHAMPION) is None

    approve = _dag("approve")
    refused = approve.test(run_conf={"version": "7", "reason": "no such version"})
    assert str(refused.state) == "failed"
    approved = approve.test(run_conf={"version": "1", "reason": "suites reviewed"})
    assert str(approved.state) == "success", _states(approved)
    assert alias_version(client, name, CHAMPION) == "1" and alias_version(client, name, CANDIDATE) is None
    tags = client.get_model_version(name, "1").tags
    assert tags["ctloop.promoted_reason"] == "approved: suites reviewed"
    assert tags["ctloop.promoted_by"].startswith("airflow:support_escalation__approve/")


def test_rollout_mode_hands_every_retrain_to_the_rollout_unless_a_person_forces_it(use_params, ctloop_home: Path) -> None:  # type: ignore[no-untyped-def]
    """``promotion.mode: rollout``: the first model goes straight in; a gated challenger of any trigger (a
    drift here) becomes ``@candidate`` at the first step's weight and the promote task's Asset runs
    ``<model>__rollout``; only ``force_promote`` from a person skips the steps."""
    use_params(promotion={"mode": "rollout"})
    from ctloop.core.params import get_params
    from ctloop.core.settings import get_settings
    from ctloop.data.routes import read_routes
    from ctloop.flows.rollout import read_rollout
    from ctloop.flows.tasks import retrain_promote
    from ctloop.registry.mlflow_registry import CANDIDATE, CHAMPION, alias_version, configure_mlflow

    settings, params = get_settings(), get_params()
    client = configure_mlflow(settings)
    name = params.training.registered_model
    client.create_registered_model(name)
    for v in ("1", "2", "3"):
        version_with_run(client, name, f"file:///nonexistent/v{v}")
    drift = {"kind": "drift", "reason": "drift share 0.6", "dag_id": "support_escalation__retrain", "run_id": "r"}
    gate_version(client, name, "1", True, None, ["first"])
    first = retrain_promote(None, {"passed": True, "challenger": "1", "champion": None}, {}, drift)
    assert first is not None and "rollout" not in first and alias_version(client, name, CHAMPION) == "1"
    gate_version(client, name, "2", True, "1", ["better"])
    handed = retrain_promote(None, {"passed": True, "challenger": "2", "champion": "1"}, {}, drift)
    assert handed is not None and handed["rollout"]["status"] == "running"
    assert alias_version(client, name, CHAMPION) == "1" and alias_version(client, name, CANDIDATE) == "2"
    routes = read_routes(settings.state_dir, params.serving)
    assert (routes.canary_alias, routes.canary_fraction) == ("candidate", params.promotion.rollout.steps[0].weight)
    gate_version(client, name, "3", True, "1", ["better still"])
    forced = retrain_promote(None, {"passed": True, "challenger": "3", "champion": "1"}, {"force_promote": True},
                             {**drift, "kind": "manual", "reason": "hotfix"})
    assert forced is not None and "rollout" not in forced and alias_version(client, name, CHAMPION) == "3"
    state = read_rollout(settings)  # the forced promotion ended v2's rollout: weight 0, v2 withdrawn
    assert state is not None and state.candidate == "2" and state.status == "aborted" and "forced" in state.ended_reasons[0]
    assert read_routes(settings.state_dir, params.serving).canary_fraction == 0.0


def test_the_promote_tasks_asset_schedules_the_rollout_dag() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / "ctloop_models.py"))
    promote = bag.dags["support_escalation__retrain"].get_task("promote")
    assert [a.name for a in promote.outlets] == ["ctloop/support_escalation/rollout"]
    rollout = bag.dags["support_escalation__rollout"]
    assert [a.name for a in rollout.timetable.asset_condition.objects] == ["ctloop/support_escalation/rollout"]
    assert rollout.get_task("control").__class__.__name__ == "RolloutController"
    assert rollout.params["action"] == "advance"
