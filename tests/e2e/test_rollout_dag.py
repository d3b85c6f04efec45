"""The staged rollout through the real scheduler and triggerer, with a real ``ctloop serve`` under traffic:
the gate's Asset event (``ctloop/<model>/rollout``, emitted here through Airflow's REST API as
``<model>__retrain`` emits it) runs ``<model>__rollout``, whose task defers to the triggerer while traffic
arrives and moves the candidate 25% -> 100% -> champion with no failed request. A quiet candidate's step
times out Inconclusive, the run ends with the rollout paused, the DAG's typed form resumes it and the CLI
aborts it while the task waits on the triggerer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from tests.conftest import gate_version
from tests.e2e.conftest import start_airflow
from tests.serving_helpers import Server, Traffic, register, training_frame

pytestmark = pytest.mark.e2e

MODEL = "support_escalation"
DAG = f"{MODEL}__rollout"
LATENCY = {"success": 50.0, "failure": 100.0}  # a busy test machine is not what this test judges
ROLLOUT = {"steps": [{"weight": 0.25, "min_requests": 40, "min_seconds": 0, "timeout_seconds": 300},
                     {"weight": 1.0, "min_requests": 40, "min_seconds": 0, "timeout_seconds": 300}],
           "interval_seconds": 2,
           "analysis": {"error_rate_increase": {"success": 0.005, "failure": 0.02}, "p99_ratio": LATENCY,
                        "score_distance": {"success": 0.25, "failure": 0.5}}}
SERVING = {"poll_seconds": 0.3, "log": {"flush_seconds": 0.3, "flush_rows": 5000, "max_queue_rows": 200000}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from ctloop.core.params import load_params
    from ctloop.core.settings import get_settings
    from ctloop.estimators.pipeline import build_pipeline
    from ctloop.registry.mlflow_registry import configure_mlflow

    home = tmp_path_factory.mktemp("rollout-e2e")
    airflow, settings = start_airflow(home, schedule_end=date(2026, 1, 2), serving=SERVING,
                                      promotion={"mode": "rollout", "rollout": ROLLOUT})
    server = None
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CTLOOP_HOME", str(settings.home))
            mp.setenv("CTLOOP_PARAMS", str(settings.params))
            get_settings.cache_clear()
            params = load_params(settings.params)
            frame = training_frame(params)
            contract = params.dataset

            def version(c: float, champion: bool = False) -> str:
                return register(get_settings(), params, build_pipeline(contract, "logistic_regression",
                                                                       {"C": c, "max_iter": 1000}),
                                frame, ("champion",) if champion else ())

            client = configure_mlflow(get_settings())
            server = Server(settings.home, settings.params)
            v1 = version(1.0, champion=True)
            server.wait_ready()
            airflow.wait_for_dags([DAG])
            airflow.unpause(DAG)
            yield {"airflow": airflow, "settings": get_settings(), "params": params, "frame": frame,
                   "server": server, "client": client, "version": version, "v1": v1}
            get_settings.cache_clear()
    finally:
        if server is not None:
            server.stop()
        airflow.stop()


def gate_event(stack: dict[str, Any], candidate: str) -> None:
    """What ``<model>__retrain``'s promote task does in ``promotion.mode: rollout``: start the rollout, emit
    the Asset event."""
    from ctloop.flows.rollout import start_rollout
    from ctloop.registry.mlflow_registry import alias_version

    client, params, settings = stack["client"], stack["params"], stack["settings"]
    name = params.training.registered_model
    gate_version(client, name, candidate, True, alias_version(client, name, "champion"), ["e2e gate"])
    start_rollout(params, settings, candidate, "e2e: gate passed", actor="e2e")  # the spec as the tasks read it
    airflow = stack["airflow"]
    [asset] = [a for a in airflow.api("GET", "/assets", params={"name_pattern": f"ctloop/{MODEL}/rollout"})["assets"]
               if a["name"] == f"ctloop/{MODEL}/rollout"]
    airflow.api("POST", "/assets/events", json={"asset_id": asset["id"], "extra": {"candidate": candidate}})


def task_states_until_done(airflow: Any, runs_before: int, timeout: float = 600) -> tuple[dict[str, Any], set[str]]:
    """Wait for the next run of the rollout DAG (after ``runs_before``) to finish; the states its task went
    through."""
    deadline, seen = time.monotonic() + timeout, set()
    while time.monotonic() < deadline:
        runs = airflow.dag_runs(DAG)
        if len(runs) > runs_before:
            run = runs[-1]
            seen |= {ti["state"] for ti in airflow.task_instances(DAG, run["dag_run_id"])}
            if run["state"] in ("success", "failed"):
                return run, seen
        time.sleep(0.5)
    raise AssertionError(f"{DAG} did not finish within {timeout:.0f} s: {airflow.dag_runs(DAG)}")


def test_the_gates_asset_event_rolls_a_good_candidate_out_through_the_triggerer(stack: dict[str, Any]) -> None:
    from ctloop.flows.rollout import read_rollout
    from ctloop.registry.mlflow_registry import alias_version

    client, name = stack["client"], stack["params"].training.registered_model
    good = stack["version"](0.8)
    with Traffic(stack, "good", pause=0.02) as traffic:
        gate_event(stack, good)
        run, states = task_states_until_done(stack["airflow"], 0)
    assert run["state"] == "success" and run["run_type"] == "asset_triggered", run
    assert "deferred" in states, states  # waiting for traffic held no worker slot
    state = read_rollout(stack["settings"])
    assert state is not None and state.status == "promoted", state
    assert [(s["weight"], s["outcome"]) for s in state.steps] == [(0.25, "Successful"), (1.0, "Successful")]
    assert alias_version(client, name, "champion") == good and alias_version(client, name, "previous") == stack["v1"]
    assert {status for status, _ in traffic.answers} == {200}, traffic.answers  # zero failed requests
    assert traffic.answers[(200, "canary")] > 0
    # the task's "MLflow run" link opens the candidate's run, where each step's analysis is logged
    [ti] = stack["airflow"].task_instances(DAG, run["dag_run_id"])
    links = stack["airflow"].api("GET", f"/dags/{DAG}/dagRuns/{run['dag_run_id']}/taskInstances/{ti['task_id']}/links")
    run_id = client.get_model_version(name, good).run_id
    assert links["extra_links"]["MLflow run"].endswith(f"/runs/{run_id}"), links
    assert {f"rollout/step-{n}.json" for n in (1, 2)} <= {a.path for a in client.list_artifacts(run_id, "rollout")}


def test_a_quiet_step_pauses_the_form_resumes_it_and_the_cli_aborts_it(stack: dict[str, Any]) -> None:
    from ctloop.core.params import load_params
    from ctloop.flows.rollout import read_rollout
    from ctloop.registry.mlflow_registry import alias_version
    from tests.conftest import run_cli, write_params

    client, name, airflow = stack["client"], stack["params"].training.registered_model, stack["airflow"]
    champion = alias_version(client, name, "champion")
    quiet = stack["version"](0.6)
    # the tasks read the spec at run time: from now on a step needs more requests than a quiet hour brings
    # and times out after 15 s
    quiet_steps = {**ROLLOUT, "steps": [{**step, "min_requests": 100_000, "timeout_seconds": 15}
                                        for step in ROLLOUT["steps"]]}
    write_params(stack["settings"].params, serving=SERVING, promotion={"mode": "rollout", "rollout": quiet_steps})
    stack["params"] = load_params(stack["settings"].params)
    runs = len(airflow.dag_runs(DAG))
    gate_event(stack, quiet)
    run, states = task_states_until_done(airflow, runs)
    assert len(airflow.dag_runs(DAG)) == runs + 1 and run["state"] == "success" and "deferred" in states
    state = read_rollout(stack["settings"])
    assert state is not None and state.status == "paused" and state.steps[-1]["outcome"] == "Inconclusive"
    assert "timeout" in state.steps[-1]["reasons"][0]
    resumed = airflow.trigger(DAG, conf={"action": "resume", "reason": "traffic is back"})
    deadline = time.monotonic() + 120
    while {ti["state"] for ti in airflow.task_instances(DAG, resumed)} != {"deferred"}:
        assert time.monotonic() < deadline, airflow.task_instances(DAG, resumed)
        time.sleep(0.5)
    assert read_rollout(stack["settings"]).status in ("running", "paused")  # type: ignore[union-attr]
    aborted = run_cli("rollout", "abort", "--reason", "not this week")
    assert aborted.returncode == 0, aborted.stderr
    [run] = airflow.wait_for_runs(DAG, 1, timeout=120, run_filter=resumed)
    assert run["state"] == "success"  # the trigger saw the abort and the task ended
    state = read_rollout(stack["settings"])
    assert state is not None and state.status == "aborted" and "not this week" in state.ended_reasons[0]
    assert alias_version(client, name, "champion") == champion and alias_version(client, name, "candidate") is None
    refused = airflow.trigger(DAG, conf={"action": "resume", "reason": "again"})
    [run] = airflow.wait_for_runs(DAG, 1, timeout=300, run_filter=refused)
    assert run["state"] == "failed"  # nothing paused to resume: the task fails with the one-line reason
