"""The loop on the production topology without containers: PostgreSQL 15 (Airflow's metadata DB and MLflow's
backend store), Redis (the Celery broker), Airflow's api-server, scheduler, dag-processor and triggerer, and
two `airflow celery worker`s. Ingest backfill -> retrain -> champion (tasks spread over both workers), a
worker killed with SIGKILL mid-task (the task is retried on the other worker, the run succeeds), a drift
window -> retrain through the Asset, and a bad release rolled back by the monitor. The embedded default
(LocalExecutor on SQLite) runs in test_ingest_backfill.py and in `make demo`."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.alert_helpers import StatsdReceiver, WebhookReceiver, http_connection
from tests.conftest import REPO, write_params
from tests.stack_helpers import Postgres, Redis

pytestmark = pytest.mark.e2e
WORKERS = ("worker-1", "worker-2")


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[WebhookReceiver, StatsdReceiver]]:
    """Where the stack's alerts (the ctloop_alerts http connection) and ctloop's metrics (StatsD) go."""
    webhook, statsd = WebhookReceiver(), StatsdReceiver()
    yield webhook, statsd
    webhook.close()
    statsd.close()


@pytest.fixture(scope="module")
def loop_stack(tmp_path_factory: pytest.TempPathFactory, receivers: tuple[WebhookReceiver, StatsdReceiver]
               ) -> Iterator[tuple[Any, Any, Any]]:
    from ctloop.core.settings import Settings
    from ctloop.dev.local_airflow import LocalAirflow, free_port

    home = tmp_path_factory.mktemp("loop")
    pg, redis = Postgres(), Redis()
    # promotion.mode auto: the drift retrain below replaces the champion at once, so the last test's forced bad
    # release and its automatic rollback are about the monitor alone (the staged rollout, the default, has its
    # own end-to-end test: tests/e2e/test_rollout_dag.py)
    params = write_params(home / "params.yaml", source={"rows_per_day": 500, "incidents": {"2026-01-07": "upstream_bug"}},
                          training={"min_rows": 1000, "test_days": 1}, promotion={"mode": "auto"})
    settings = Settings(home=home / "ctloop", params=params, project_dir=REPO, schedule_end=date(2026, 1, 10),
                        mlflow_tracking_uri=pg.url("mlflow"))
    airflow = LocalAirflow.from_settings(settings, port=free_port(), extra_env={
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.url("airflow"),
        "AIRFLOW__CELERY__BROKER_URL": redis.url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{pg.url('airflow', 'postgresql')}",
        # a killed worker's task is noticed by its missing heartbeats (default 300 s)
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
        "CTLOOP_MLFLOW_TRACKING_URI": pg.url("mlflow"),
        "AIRFLOW_CONN_CTLOOP_ALERTS": http_connection(receivers[0].url),
        "CTLOOP_STATSD_HOST": "127.0.0.1",
        "CTLOOP_STATSD_PORT": str(receivers[1].port),
    })
    try:
        airflow.start()
        for name in WORKERS:
            airflow.start_celery_worker(name)
        yield airflow, settings, pg
    finally:
        airflow.stop()
        redis.stop()
        pg.stop()


@pytest.fixture
def loop_airflow(loop_stack: tuple[Any, Any, Any]) -> tuple[Any, Any]:
    return loop_stack[0], loop_stack[1]


def _mlflow(settings):  # type: ignore[no-untyped-def]
    from ctloop.core.params import load_params
    from ctloop.registry.mlflow_registry import configure_mlflow

    return configure_mlflow(settings), load_params(settings.params).training.registered_model


def test_ingest_then_retrain_promotes_a_champion(loop_airflow) -> None:  # type: ignore[no-untyped-def]
    airflow, settings = loop_airflow
    airflow.wait_for_dags(["support_escalation__ingest", "support_escalation__retrain"])
    airflow.unpause("support_escalation__ingest")
    airflow.unpause("support_escalation__retrain")
    airflow.wait_for_backfill(airflow.backfill("support_escalation__ingest", "2026-01-05", "2026-01-10"), timeout=600)
    ingest = {r["logical_date"][:10]: r["state"] for r in airflow.dag_runs("support_escalation__ingest")}
    assert ingest["2026-01-07"] == "failed" and sum(s == "success" for s in ingest.values()) == 5
    ran_on = {t["hostname"] for r in airflow.dag_runs("support_escalation__ingest")
              for t in airflow.task_instances("support_escalation__ingest", r["dag_run_id"]) if t["state"] != "upstream_failed"}
    assert ran_on == set(WORKERS), ran_on  # the Celery queue spread the tasks over both workers

    # a manual trigger with Params, through the Airflow REST API, as the UI form would send it
    run_id = airflow.trigger("support_escalation__retrain", conf={"reason": "e2e: first champion", "window_days": 10})
    [run] = airflow.wait_for_runs("support_escalation__retrain", 1, timeout=600)
    states = {t["task_id"]: t["state"] for t in airflow.task_instances("support_escalation__retrain", run_id)}
    assert run["state"] == "success", states
    assert states == {"build_training_set": "success", "validate_training_set": "success",
                      "train_challenger": "success", "evaluate": "success", "gate": "success", "promote": "success"}

    client, name = _mlflow(settings)
    champion = client.get_model_version_by_alias(name, "champion")
    tags = client.get_run(champion.run_id).data.tags
    assert tags["ctloop.trigger"] == "manual"
    assert tags["ctloop.trigger_reason"] == "e2e: first champion"
    assert tags["ctloop.airflow.run_id"] == run_id
    window = json.loads(Path(client.download_artifacts(champion.run_id, "reference/window.json")).read_text())
    assert "2026-01-07" not in window["train_days"] + window["test_days"], "the quarantined day is never trained on"
    assert window["test_days"] == ["2026-01-10"]

    # lineage of the champion resolves down to the raw batches the scheduler ingested
    from ctloop.core.params import load_params
    from ctloop.data.store import Lake
    from ctloop.flows.lineage import resolve_lineage

    chain = resolve_lineage(settings, load_params(settings.params), Lake(settings.lake_root), champion.version)
    assert chain.complete, chain.problems
    assert chain.trigger["airflow.run_id"] == run_id and chain.trigger["airflow.dag_id"] == "support_escalation__retrain"
    assert all(raw["intact"] for p in chain.partitions for raw in p["raw_files"])

    # the audit trail: the listener plugin recorded DAG run outcomes, the library the promotion
    from ctloop.core.audit import audit_log

    log = audit_log(settings)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = {(e["subject"], e["outcome"]) for e in log.entries() if e["kind"] == "dag_run"}
        if (f"support_escalation__retrain/{run_id}", "success") in runs:
            break
        time.sleep(1)
    assert (f"support_escalation__retrain/{run_id}", "success") in runs, runs
    failed_ingest = [e for e in log.entries() if e["kind"] == "dag_run" and e["outcome"] == "failed"]
    assert [e["details"]["data_interval_start"][:10] for e in failed_ingest] == ["2026-01-07"], failed_ingest
    promotion = [e for e in log.entries() if e["kind"] == "promotion"][-1]
    assert promotion["outcome"] == "promoted" and promotion["actor"] == f"airflow:support_escalation__retrain/{run_id}"
    assert log.verify().ok


def test_failures_alert_and_every_task_reports_its_cost(loop_airflow, receivers) -> None:  # type: ignore[no-untyped-def]
    """After the first test: the bad day's validation failed on a worker, the champion's run was costed."""
    _, settings = loop_airflow
    webhook, statsd = receivers
    webhook.wait_for(lambda rs: {"task_failure", "quarantine"} <= {r.body["event"] for r in rs})
    failure = next(r.body for r in webhook.requests if r.body["event"] == "task_failure")
    assert failure["subject"] == "support_escalation__ingest.validate_batch" and failure["severity"] == "critical"
    assert failure["details"]["hostname"] in WORKERS and failure["details"]["data_interval_start"].startswith("2026-01-07")
    assert failure["reasons"][0].startswith("AirflowFailException") and "validate_batch" in failure["details"]["log_url"]
    quarantine = next(r.body for r in webhook.requests if r.body["event"] == "quarantine")
    assert quarantine["subject"] == "batch 2026-01-07"

    client, name = _mlflow(settings)
    champion = client.get_model_version_by_alias(name, "champion")
    metrics = client.get_run(champion.run_id).data.metrics
    tasks = ("build_training_set", "validate_training_set", "train_challenger", "evaluate", "gate")
    assert metrics["cost.total.tasks"] == len(tasks), sorted(k for k in metrics if k.startswith("cost."))
    assert metrics["cost.total.cpu_seconds"] == pytest.approx(sum(metrics[f"cost.{t}.cpu_seconds"] for t in tasks))
    assert metrics["cost.train_challenger.rows"] == metrics["train_rows"] and metrics["model_size_bytes"] > 10_000
    assert metrics["cost.train_challenger.cpu_seconds"] > 0 and metrics["cost.evaluate.rows"] == metrics["test_rows"]

    gauges = [(n, v, t) for n, v, k, t in statsd.parsed() if k == "g"]
    costed = {(t["dag"], t["task"]) for n, _, t in gauges if n == "ctloop.task.cpu_seconds" and t["outcome"] == "success"}
    assert {("support_escalation__retrain", t) for t in (*tasks, "promote")} | {("support_escalation__ingest", "publish_curated")} <= costed
    assert ("ctloop.task.wall_seconds", "support_escalation__ingest", "validate_batch", "failed") in {
        (n, t["dag"], t["task"], t["outcome"]) for n, _, t in gauges if n.startswith("ctloop.task.")}
    assert ("ctloop.registry.champion_version", float(champion.version)) in {(n, v) for n, v, _ in gauges}
    assert ("ctloop.registry.model_size_bytes", metrics["model_size_bytes"]) in {(n, v) for n, v, _ in gauges}


def test_a_worker_killed_mid_task_ends_with_the_task_retried_elsewhere(loop_airflow) -> None:  # type: ignore[no-untyped-def]
    airflow, _ = loop_airflow
    run_id = airflow.trigger("support_escalation__retrain", conf={"reason": "e2e: a worker dies", "window_days": 10})
    victim = task = None
    deadline = time.monotonic() + 300
    while victim is None and time.monotonic() < deadline:
        for t in airflow.task_instances("support_escalation__retrain", run_id):
            if t["state"] == "running" and t.get("hostname") in WORKERS:
                victim, task = t["hostname"], t["task_id"]
                break
        time.sleep(0.2)
    assert victim is not None, "no ctloop_retrain task was seen running"
    killed = airflow.forget(f"celery-{victim}")  # killed on purpose: the runner must not report it
    os.killpg(killed.pid, signal.SIGKILL)  # the worker and its task, at once
    [run] = airflow.wait_for_runs("support_escalation__retrain", 1, timeout=600, run_filter=run_id)
    tis = {t["task_id"]: t for t in airflow.task_instances("support_escalation__retrain", run_id)}
    assert run["state"] == "success", {k: v["state"] for k, v in tis.items()}
    survivor = next(name for name in WORKERS if name != victim)
    assert tis[task]["try_number"] >= 2 and tis[task]["hostname"] == survivor, tis[task]
    airflow.start_celery_worker(victim)  # back to two workers for the tests after this one


def test_drift_window_triggers_retrain_through_the_asset(loop_airflow, receivers) -> None:  # type: ignore[no-untyped-def]
    """Runs after the champion exists (same module, same Airflow)."""
    from ctloop.core.params import load_params
    from ctloop.data.store import Lake
    from ctloop.dev.traffic import TrafficSpec, simulate_traffic

    airflow, settings = loop_airflow
    params = load_params(settings.params)
    drift_day = date(2026, 1, 12)
    simulate_traffic(TrafficSpec(drift_day, 1, "covariate_shift", drift_day, rows_per_day=1000), params, settings,
                     Lake(settings.lake_root))
    before = {r["dag_run_id"] for r in airflow.dag_runs("support_escalation__retrain")}
    airflow.unpause("support_escalation__monitor")
    airflow.wait_for_backfill(airflow.backfill("support_escalation__monitor", drift_day.isoformat(), drift_day.isoformat(), 1))
    [monitor_run] = airflow.dag_runs("support_escalation__monitor")
    tasks = {t["task_id"]: t["state"] for t in airflow.task_instances("support_escalation__monitor", monitor_run["dag_run_id"])}
    assert tasks["emit_drift_event"] == "success", tasks

    deadline = time.monotonic() + 600
    new: list[dict] = []
    while time.monotonic() < deadline:
        new = [r for r in airflow.dag_runs("support_escalation__retrain") if r["dag_run_id"] not in before]
        if new and new[0]["state"] in ("success", "failed"):
            break
        time.sleep(2)
    assert new, "the drift Asset event created a ctloop_retrain run"
    assert new[0]["run_type"] == "asset_triggered" and new[0]["state"] == "success", new[0]

    client, name = _mlflow(settings)
    version = max(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    tags = client.get_run(version.run_id).data.tags
    assert tags["ctloop.trigger"] == "drift"
    assert "data drift" in tags["ctloop.trigger_reason"] and "product_area" in tags["ctloop.trigger_reason"]
    details = json.loads(tags["ctloop.trigger_details"])
    assert details["window"] == drift_day.isoformat() and Path(details["report"]).exists()

    webhook, statsd = receivers
    drift = next(r.body for r in webhook.requests if r.body["event"] == "drift_trigger")
    assert drift["subject"] == f"window {drift_day}" and any("product_area" in r for r in drift["reasons"])
    monitor = {n: v for n, v, k, t in statsd.parsed() if n.startswith("ctloop.monitor.")}
    summary = json.loads((settings.lake_root / "reports" / "monitor" / f"dt={drift_day}" / "summary.json").read_text())
    assert monitor["ctloop.monitor.drift_share"] == pytest.approx(summary["drift_share"], rel=1e-5)
    assert monitor["ctloop.monitor.drift_share"] > 0 and monitor["ctloop.monitor.triggered"] == 1
    assert monitor["ctloop.monitor.rows"] == summary["rows"] == 1000


def test_a_bad_release_is_rolled_back_automatically_by_the_monitor(loop_airflow, receivers) -> None:  # type: ignore[no-untyped-def]
    """Runs last: a good champion serves and is monitored, a bad version is force-promoted, its labeled
    quality drops during the bake period, and the scheduler's monitor run rolls it back."""
    from datetime import timedelta

    from ctloop.core.params import load_params
    from ctloop.data.store import Lake
    from ctloop.dev.traffic import TrafficSpec, simulate_traffic
    from ctloop.flows.promotion import promote_version
    from ctloop.flows.retrain import describe_trigger, prepare, train, training_set_dir
    from ctloop.registry.mlflow_registry import read_history

    airflow, settings = loop_airflow
    airflow.pause("support_escalation__retrain")  # drift events may queue; no retrain may race the rollback under test
    params = load_params(settings.params)
    lake = Lake(settings.lake_root)
    client, name = _mlflow(settings)
    good = str(client.get_model_version_by_alias(name, "champion").version)
    start = date(2026, 1, 14)
    simulate_traffic(TrafficSpec(start, 3, "stable", None, rows_per_day=1000, label_delay_days=1, label_fraction=1.0),
                     params, settings, lake)
    airflow.wait_for_backfill(airflow.backfill("support_escalation__monitor", "2026-01-14", "2026-01-16", 1), timeout=900)

    # a bad release: a one-split stump, promoted by force past its gate
    data = training_set_dir(lake, "e2e-bad-release")
    prepare(params, lake, date(2026, 1, 11), 10, data, describe_trigger("manual", "e2e: bad release", None))
    bad = str(train(params, settings, data, model="hist_gradient_boosting",
                    hyperparameters={"max_iter": 1, "max_depth": 1, "learning_rate": 0.01}).version)
    promote_version(params, settings, bad, "e2e: bad release", force=True)
    simulate_traffic(TrafficSpec(start + timedelta(days=3), 2, "stable", None, rows_per_day=1000, label_delay_days=1,
                                 label_fraction=1.0), params, settings, lake)
    airflow.wait_for_backfill(airflow.backfill("support_escalation__monitor", "2026-01-17", "2026-01-18", 1), timeout=900)

    runs = {r["logical_date"][:10]: r for r in airflow.dag_runs("support_escalation__monitor")}
    guarded = {t["task_id"]: t["state"] for t in airflow.task_instances("support_escalation__monitor", runs["2026-01-18"]["dag_run_id"])}
    assert guarded["guard_new_champion"] == "success", guarded
    assert str(client.get_model_version_by_alias(name, "champion").version) == good
    tags = client.get_model_version(name, bad).tags
    assert "automatic rollback" in tags["ctloop.rolled_back_reason"] and "ctloop.gate_decision" not in tags
    last = read_history(settings, name)[-1]
    assert last["kind"] == "rollback" and last["actor"].startswith("airflow:support_escalation__monitor/")
    assert {"alias": "champion", "from": bad, "to": good} in last["moves"]
    decision = json.loads((lake.root / "reports" / "monitor" / "dt=2026-01-18" / "rollback.json").read_text())
    assert decision["decision"]["quality_window"] == "2026-01-17"
    assert decision["decision"]["previous_quality"] - decision["decision"]["champion_quality"] > 0.05
    assets = airflow.api("GET", "/assets", params={"name_pattern": "ctloop/support_escalation/rollback"})["assets"]
    events = airflow.api("GET", "/assets/events", params={"asset_id": assets[0]["id"]})["asset_events"]
    assert events and events[-1]["extra"]["rolled_back"] == bad
    rollback = [r.body for r in receivers[0].requests if r.body["event"] == "rollback"]
    assert [a["subject"] for a in rollback] == [f"{name} v{bad} -> v{good}"] and rollback[0]["severity"] == "critical"
    assert "automatic rollback" in rollback[0]["reasons"][0]


def test_postgresql_restarted_under_the_scheduler_the_loop_goes_on(loop_stack) -> None:  # type: ignore[no-untyped-def]
    """The metadata database restarts (every connection cut) while the scheduler, the api-server and both
    workers run: each reconnects or, if it exited while the database was down, is started again as compose's
    ``restart: always`` does; nothing is lost and the next run goes through."""
    airflow, _, pg = loop_stack
    pg.restart()
    restarted: list[str] = []
    for _ in range(10):  # a component that was mid-query while the server was down exits within seconds
        time.sleep(2)
        restarted += airflow.restart_exited()
    airflow.wait_healthy()
    airflow.unpause("support_escalation__labels")
    run_id = airflow.trigger("support_escalation__labels", logical_date="2026-01-10T00:00:00Z")
    [run] = airflow.wait_for_runs("support_escalation__labels", 1, timeout=300, run_filter=run_id)
    assert run["state"] == "success", restarted  # no label delivery that day: the task is skipped, the run succeeds
    airflow.check_processes()
