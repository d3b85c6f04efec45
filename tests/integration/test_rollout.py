"""Staged rollout against a real ``ctloop serve`` and a real MLflow registry: the rollout flows write the
candidate's weight, the server applies it (sticky keys), traffic is logged, and each step is measured from
the prediction log and judged. A good candidate goes step by step to champion with no failed request; a
candidate whose scores shift is aborted by the analysis; a candidate that errors is stopped by the server's
guard and the rollout ends Failed; too little traffic pauses it, and the CLI resumes and aborts it."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ctloop.core.params import Params, RolloutSpec, load_params
from ctloop.core.settings import get_settings
from ctloop.estimators.pipeline import build_pipeline
from ctloop.registry.mlflow_registry import alias_version, configure_mlflow
from tests.alert_helpers import WebhookReceiver, http_connection
from tests.conftest import gate_version, run_cli, write_params
from tests.serving_helpers import Server, Traffic, failing_on_unseen, logged, register, training_frame

pytestmark = pytest.mark.integration

SERVING = {"poll_seconds": 0.2, "guard": {"window": 200, "min_requests": 20, "max_error_rate_increase": 0.02,
                                          "max_p99_ratio": 50.0, "min_p99_increase_ms": 5000},
           "log": {"flush_seconds": 0.2, "flush_rows": 5000, "max_queue_rows": 200000}}
LENIENT_LATENCY = {"success": 50.0, "failure": 100.0}  # a busy test machine is not what these tests judge
# The two routes serve different keys, so even one model's scores differ between them: with 60 to 300 rows a
# side the normed Wasserstein distance of the same model was about 0.1 (measured); one policy for both tests
SCORES = {"success": 0.25, "failure": 0.5}


def policy(*weights: float, min_requests: int = 30, timeout: float = 600, **analysis: dict[str, float]) -> RolloutSpec:
    return RolloutSpec.model_validate({
        "steps": [{"weight": w, "min_requests": min_requests, "min_seconds": 0, "timeout_seconds": timeout}
                  for w in weights],
        "interval_seconds": 1,
        "analysis": {"error_rate_increase": {"success": 0.005, "failure": 0.02}, "p99_ratio": LENIENT_LATENCY,
                     **analysis}})


def with_policy(params: Params, spec: RolloutSpec) -> Params:
    return params.model_copy(update={"promotion": params.promotion.model_copy(update={"rollout": spec})})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("rollout")
    home = root / "home"
    params_path = write_params(root / "params.yaml", serving=SERVING, promotion={"mode": "rollout"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTLOOP_HOME", str(home))
        mp.setenv("CTLOOP_PARAMS", str(params_path))
        get_settings.cache_clear()
        settings, params = get_settings(), load_params(params_path)
        frame = training_frame(params)
        webhook = WebhookReceiver()
        mp.setenv("AIRFLOW_CONN_CTLOOP_ALERTS", http_connection(webhook.url))  # the flows' alerts, in process
        v1 = register(settings, params, build_pipeline(params.dataset, "logistic_regression", {"max_iter": 1000}),
                      frame, ("champion",))
        from ctloop.cli.app import alert_in_process
        from ctloop.core.audit import subscribe, unsubscribe

        subscribe(alert_in_process)  # as the CLI and the DAG's tasks do
        server = Server(home, params_path)
        replica = Server(home, params_path)  # a second replica reading the same home: it applies every weight
        try:
            server.wait_ready()
            replica.wait_ready()
            yield {"server": server, "replica": replica, "home": home, "settings": settings, "params": params, "frame": frame,
                   "client": configure_mlflow(settings), "webhook": webhook, "v1": v1,
                   "env": {"CTLOOP_HOME": str(home), "CTLOOP_PARAMS": str(params_path)}}
        finally:
            server.stop()
            replica.stop()
            webhook.close()
            unsubscribe(alert_in_process)
            get_settings.cache_clear()


def candidate(served: dict[str, Any], pipeline: Any, frame: Any = None) -> str:
    """A new version, gated (passed) against the champion in force."""
    params, client = served["params"], served["client"]
    name = params.training.registered_model
    version = register(served["settings"], params, pipeline, served["frame"] if frame is None else frame)
    gate_version(client, name, version, True, alias_version(client, name, "champion"), ["test gate"])
    return version


def traffic(served: dict[str, Any], n: int, prefix: str, languages: tuple[str, ...] | None = None) -> Counter[Any]:
    """``n`` requests, one key each, through the server; the (status, route) of every answer. Waits until
    the answers are in the prediction log."""
    contract = served["params"].dataset
    frame = served["frame"]
    if languages is not None:
        frame = frame[frame["language"].isin(languages)]
    out: Counter[Any] = Counter()
    ids = set()
    with served["server"].client() as c:
        for i, row in enumerate(frame.sample(n, replace=True, random_state=len(prefix)).to_dict("records")):
            rec = {k: row[k] for k in contract.features} | {"request_id": f"{prefix}-{i}", "key": f"{prefix}-k{i}"}
            r = c.post("/predict", json=rec)
            out[(r.status_code, r.json().get("route") if r.status_code == 200 else None)] += 1
            ids.add(rec["request_id"])
    deadline = time.monotonic() + 20
    while not ids <= set(logged(served["home"] / "lake")["request_id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return out


def serving(served: dict[str, Any], version: str | None, fraction: float, timeout: float = 15) -> dict[str, Any]:
    """Wait until both replicas apply the routes (candidate ``version`` at ``fraction``; None: no canary)."""
    deadline = time.monotonic() + timeout
    for server in (served["replica"], served["server"]):
        with server.client() as c:
            while True:
                model = c.get("/model").json()
                canary = model["canary"]
                if (canary is None and version is None) or (canary and canary["version"] == version
                                                            and canary["fraction"] == fraction):
                    break
                assert time.monotonic() < deadline, (version, fraction, canary and (canary["version"], canary["fraction"]))
                time.sleep(0.1)
    return dict(model)


def swaps(server: Server) -> float:
    """Models this server loaded and warmed up so far (every alias)."""
    with server.client() as c:
        text = c.get("/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("ctloop_serving_model_swaps_total{"))


def champion_served(server: Server, version: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with server.client() as c:
        while (model := c.get("/model").json())["champion"]["version"] != version:
            assert time.monotonic() < deadline, model
            time.sleep(0.02)
    return dict(model)


def test_a_good_candidate_earns_its_traffic_step_by_step_and_becomes_champion(served: dict[str, Any]) -> None:
    from ctloop.core.audit import audit_log
    from ctloop.flows.rollout import advance_rollout, read_rollout, start_rollout

    settings, client = served["settings"], served["client"]
    params = with_policy(served["params"], policy(0.2, 0.5, 1.0, score_distance=SCORES))
    name = params.training.registered_model
    champion = alias_version(client, name, "champion")
    good = candidate(served, build_pipeline(params.dataset, "logistic_regression", {"C": 0.8, "max_iter": 1000}))
    start_rollout(params, settings, good, "test: a good candidate", actor="test", expected_champion=champion)
    assert alias_version(client, name, "candidate") == good
    answers: Counter[Any] = Counter()
    outcomes = []
    for step, weight in enumerate((0.2, 0.5, 1.0)):
        serving(served, good, weight)
        answers += traffic(served, 300, f"good{step}")  # about 60 to 300 candidate requests; 30 needed
        done = advance_rollout(params, settings, actor="test")
        assert done.analysis is not None
        outcomes.append((done.analysis.outcome, done.analysis.action))
        assert done.analysis.outcome == "Successful", done.analysis
    assert outcomes == [("Successful", "next"), ("Successful", "next"), ("Successful", "promote")], outcomes
    assert {status for status, _ in answers} == {200}, answers  # zero failed requests
    assert answers[(200, "canary")] > 0 and answers[(200, "champion")] > 0
    state = read_rollout(settings)
    assert state is not None and state.status == "promoted" and len(state.steps) == 3
    assert [s["weight"] for s in state.steps] == [0.2, 0.5, 1.0]
    assert alias_version(client, name, "champion") == good and alias_version(client, name, "previous") == champion
    assert alias_version(client, name, "candidate") is None
    serving(served, None, 0.0)
    for server in (served["server"], served["replica"]):  # every replica picks the new champion up
        model = champion_served(server, good)
        assert model["previous_warm"]["version"] == champion  # blue-green: the old champion stays loaded
    kinds = [(e["kind"], e["outcome"]) for e in audit_log(settings).entries() if e["kind"] in ("rollout", "promotion")]
    assert kinds[-5:] == [("rollout", "started"), ("rollout", "next step"), ("rollout", "next step"),
                          ("promotion", "promoted"), ("rollout", "promoted")]
    run = client.get_model_version(name, good).run_id
    assert {a.path for a in client.list_artifacts(run, "rollout")} == {f"rollout/step-{i}.json" for i in (1, 2, 3)}


def test_a_rollback_right_after_the_promotion_is_a_switch_to_the_warm_previous(served: dict[str, Any]) -> None:
    from ctloop.flows.promotion import rollback_version

    settings, client = served["settings"], served["client"]
    params, name = served["params"], served["params"].training.registered_model
    champion, previous = alias_version(client, name, "champion"), alias_version(client, name, "previous")
    assert previous is not None and champion != previous  # the promotion the test above made
    for server in (served["server"], served["replica"]):
        champion_served(server, str(champion))
    loaded = [swaps(served["server"]), swaps(served["replica"])]
    with Traffic(served, "switch") as traffic:
        started = time.monotonic()
        rollback_version(params, settings, None, "test: switch back", actor="test")
        moved = time.monotonic()
        switched = [champion_served(server, previous) for server in (served["server"], served["replica"])]
        done = time.monotonic()
    # figures, not gates (bench/ has the switch time): registry moves, then both replicas serving it
    print(f"rollback: aliases moved in {moved - started:.2f} s, both replicas serving @previous "
          f"{done - moved:.2f} s later")
    assert all(m["previous_warm"] is None or m["previous_warm"]["version"] != previous for m in switched)
    assert [swaps(served["server"]), swaps(served["replica"])] == loaded  # no model was loaded: a switch
    assert {status for status, _ in traffic.answers} == {200}, traffic.answers


def test_a_candidate_whose_scores_shift_is_aborted_by_the_analysis(served: dict[str, Any]) -> None:
    from ctloop.flows.rollout import advance_rollout, start_rollout

    settings, client = served["settings"], served["client"]
    params = with_policy(served["params"], policy(0.3, 1.0, score_distance=SCORES))
    name = params.training.registered_model
    champion = alias_version(client, name, "champion")
    shifted = candidate(served, build_pipeline(params.dataset, "logistic_regression", {"C": 0.001, "max_iter": 1000}))
    start_rollout(params, settings, shifted, "test: shifted scores", actor="test")
    serving(served, shifted, 0.3)
    answers = traffic(served, 200, "shift")
    done = advance_rollout(params, settings, actor="test")
    assert done.analysis is not None and done.analysis.outcome == "Failed", done.analysis
    assert any(r.startswith("score_distance") for r in done.analysis.reasons)
    assert {status for status, _ in answers} == {200}
    assert done.state is not None and done.state.status == "aborted" and done.state.weight == 0.0
    serving(served, None, 0.0)  # the candidate's keys are back on the champion
    assert alias_version(client, name, "champion") == champion and alias_version(client, name, "candidate") is None
    tags = client.get_model_version(name, shifted).tags
    assert "score_distance" in tags["ctloop.rollout_aborted_reasons"] and "ctloop.gate_passed" not in tags
    [alert] = served["webhook"].wait_for(lambda rs: any(r.body["event"] == "rollout_abort" for r in rs), timeout=30)[-1:]
    assert alert.body["severity"] == "critical" and shifted in alert.body["subject"]
    with pytest.raises(Exception, match="passing gate"):  # it needs a new gate pass to try again
        start_rollout(params, settings, shifted, "again", actor="test")


def test_the_servers_guard_stopping_the_candidate_ends_the_rollout_failed(served: dict[str, Any]) -> None:
    from ctloop.flows.rollout import advance_rollout, start_rollout

    settings, client = served["settings"], served["client"]
    params = with_policy(served["params"], policy(0.5, 1.0))
    name = params.training.registered_model
    champion = alias_version(client, name, "champion")
    frame = served["frame"]
    bad = candidate(served, failing_on_unseen(params), frame[frame["language"] != "ja"])
    start_rollout(params, settings, bad, "test: fails on Japanese tickets", actor="test")
    serving(served, bad, 0.5)
    answers = traffic(served, 200, "guard", languages=("ja",))
    assert {status for status, _ in answers} == {200}, answers  # the guard answers from the champion
    done = advance_rollout(params, settings, actor="test")
    assert done.analysis is not None and done.analysis.outcome == "Failed"
    assert "guard" in done.analysis.reasons[0]
    assert alias_version(client, name, "champion") == champion


def test_too_little_traffic_pauses_and_the_cli_resumes_and_aborts(served: dict[str, Any]) -> None:
    from ctloop.flows.rollout import advance_rollout, start_rollout

    settings = served["settings"]
    params = with_policy(served["params"], policy(0.1, 1.0, min_requests=100_000, timeout=1))
    slow = candidate(served, build_pipeline(params.dataset, "logistic_regression", {"C": 0.5, "max_iter": 1000}))
    start_rollout(params, settings, slow, "test: a quiet hour", actor="test")
    done = advance_rollout(params, settings, actor="test", at=datetime.now(UTC) + timedelta(seconds=5))
    assert done.analysis is not None and (done.analysis.outcome, done.analysis.action) == ("Inconclusive", "pause")
    assert done.state is not None and done.state.status == "paused"
    status = run_cli("rollout", "status", env=served["env"])
    assert status.returncode == 0 and f"v{slow}" in status.stdout and "paused" in status.stdout, status
    overall = run_cli("status", env=served["env"])
    assert overall.returncode == 0 and f"rollout in progress: v{slow}" in overall.stdout, overall
    refused = run_cli("rollout", "resume", "--reason", " ", env=served["env"])
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "--reason" in refused.stderr
    resumed = run_cli("rollout", "resume", "--reason", "traffic is back", env=served["env"])
    assert resumed.returncode == 0 and "running" in resumed.stdout, resumed
    aborted = run_cli("rollout", "abort", "--reason", "not this week", env=served["env"])
    assert aborted.returncode == 0 and "aborted" in aborted.stdout, aborted
    again = run_cli("rollout", "abort", "--reason", "twice", env=served["env"])
    assert again.returncode == 2 and "aborted" in again.stderr and "Traceback" not in again.stderr
    serving(served, None, 0.0)
