"""The staged rollout's analysis of one step (ctloop.decisions.rollout.judge_step), pure: every outcome
(Running, Successful, Failed, Inconclusive), every metric's failure and success condition, the failure
limit, the guard's fast path, labels a step requires, and the rollout spec's own checks."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ctloop.core.params import ROLLOUT_METRICS, MetricCondition, RolloutSpec, RolloutStep
from ctloop.decisions.rollout import RouteStats, StepEvidence, judge_step

POLICY = RolloutSpec()
GOOD = {"score_distance": 0.02, "decision_agreement": 0.97, "quality_drop": 0.0}


def evidence(seconds: float = 120, requests: int = 400, errors: int = 0, p99: float = 10.0, **metrics: float | None
             ) -> StepEvidence:
    values = {**GOOD, **metrics}
    return StepEvidence(seconds, RouteStats(4000, 0, 10.0), RouteStats(requests, errors, p99),
                        values["score_distance"], values["decision_agreement"], values["quality_drop"],
                        labeled=int(values.get("labeled") or 0))


def test_a_good_candidate_goes_step_by_step_and_is_promoted_after_the_last() -> None:
    weights = [s.weight for s in POLICY.steps]
    assert weights == [0.05, 0.25, 0.5, 1.0]
    for i in range(len(weights)):
        analysis = judge_step(i, [evidence()], POLICY)
        assert analysis.outcome == "Successful", analysis.reasons
        if i < len(weights) - 1:
            assert (analysis.action, analysis.next_weight) == ("next", weights[i + 1])
        else:
            assert (analysis.action, analysis.next_weight) == ("promote", 1.0)


def test_too_little_traffic_waits_then_is_inconclusive_and_pauses() -> None:
    waiting = judge_step(0, [evidence(requests=20)], POLICY)
    assert (waiting.outcome, waiting.action, waiting.next_weight) == ("Running", "wait", None)
    assert "20 candidate requests, 200 needed" in waiting.reasons
    early = judge_step(0, [evidence(seconds=10)], POLICY)
    assert early.outcome == "Running" and any("s on the step" in r for r in early.reasons)
    late = judge_step(0, [evidence(seconds=3600, requests=20)], POLICY)
    assert (late.outcome, late.action, late.next_weight) == ("Inconclusive", "pause", None)
    assert late.reasons[0].startswith("step timeout")


def test_the_guard_stopping_the_candidate_fails_the_step_at_once() -> None:
    stopped = StepEvidence(5, RouteStats(10), RouteStats(3, 3), guard_stopped=True)
    analysis = judge_step(1, [stopped], POLICY)
    assert (analysis.outcome, analysis.action, analysis.next_weight) == ("Failed", "abort", 0.0)


@pytest.mark.parametrize(("metric", "bad", "between"), [
    ("error_rate_increase", {"errors": 40}, {"errors": 4}),
    ("p99_ratio", {"p99": 40.0}, {"p99": 20.0}),
    ("score_distance", {"score_distance": 0.6}, {"score_distance": 0.3}),
    ("decision_agreement", {"decision_agreement": 0.5}, {"decision_agreement": 0.8}),
    ("quality_drop", {"quality_drop": 0.2}, {"quality_drop": 0.03}),
])
def test_each_metric_fails_beyond_its_failure_condition_and_waits_between(metric: str, bad: dict, between: dict
                                                                          ) -> None:
    limit = POLICY.analysis[metric].failure_limit
    failed = judge_step(0, [evidence(**bad)] * (limit + 1), POLICY)
    assert (failed.outcome, failed.next_weight) == ("Failed", 0.0), failed.reasons
    assert failed.reasons[0].startswith(metric)
    if limit:  # within the failure limit the metric is not yet failed
        assert judge_step(0, [evidence(**bad)] * limit, POLICY).outcome != "Failed"
    pending = judge_step(0, [evidence(**between)], POLICY)
    assert pending.outcome == "Running" and any(r.startswith(metric) for r in pending.reasons)
    assert judge_step(0, [evidence(seconds=4000, **between)], POLICY).outcome == "Inconclusive"


@given(st.floats(1.0, 1000.0, allow_nan=False))
def test_latency_is_judged_against_a_concurrent_champion_only(ratio: float) -> None:
    """At 100% the champion serves nothing beside the candidate: its p99 is from another time and load."""
    slow = evidence(p99=10.0 * ratio)  # the champion's p99 is 10 ms
    full = judge_step(len(POLICY.steps) - 1, [slow], POLICY)
    assert full.outcome == "Successful" and full.action == "promote", full.reasons
    assert "p99_ratio: not judged at 100% (no concurrent champion)" in [m.reason for m in full.metrics]
    expected = ("Failed" if ratio > POLICY.analysis["p99_ratio"].failure else
                "Running" if ratio > POLICY.analysis["p99_ratio"].success else "Successful")
    assert judge_step(len(POLICY.steps) - 2, [slow] * 2, POLICY).outcome == expected  # at 50% it is judged


@given(st.floats(0.0, 2.0, allow_nan=False))
def test_the_score_distribution_is_judged_against_a_concurrent_champion_only(distance: float) -> None:
    """At 100% the champion's scores are another period's requests: on real flights a day whose departure
    delays drifted put 0.401 between two good models' scores."""
    moved = evidence(score_distance=distance)
    full = judge_step(len(POLICY.steps) - 1, [moved], POLICY)
    assert full.outcome == "Successful" and full.action == "promote", full.reasons
    assert "score_distance: not judged at 100% (no concurrent champion)" in [m.reason for m in full.metrics]
    rule = POLICY.analysis["score_distance"]
    expected = "Failed" if distance > rule.failure else "Running" if distance > rule.success else "Successful"
    assert judge_step(len(POLICY.steps) - 2, [moved] * (rule.failure_limit + 1), POLICY).outcome == expected


def test_measurements_before_the_minimum_traffic_do_not_count_as_failures() -> None:
    noisy = evidence(requests=5, errors=5)  # 100% errors on 5 requests: too few to judge (the guard is the fast path)
    assert judge_step(0, [noisy, noisy, evidence()], POLICY).outcome == "Successful"


def test_a_step_that_requires_labels_waits_for_them_and_others_do_not() -> None:
    policy = RolloutSpec(steps=[RolloutStep(weight=0.1, require_labels=True), RolloutStep(weight=1.0)])
    none_yet = evidence(quality_drop=None)
    assert judge_step(0, [none_yet], policy).outcome == "Running"
    assert judge_step(0, [evidence(seconds=9999, quality_drop=None)], policy).outcome == "Inconclusive"
    assert judge_step(0, [evidence(quality_drop=0.0, labeled=80)], policy).outcome == "Successful"
    assert judge_step(1, [none_yet], policy).outcome == "Successful"  # not required: not judged without labels


@given(st.lists(st.floats(0.001, 1.0, allow_nan=False), min_size=1, max_size=6, unique=True))
def test_rollout_steps_must_rise_and_end_at_full_traffic(weights: list[float]) -> None:
    steps = [RolloutStep(weight=w) for w in weights]
    ok = weights[-1] == 1.0 and all(b > a for a, b in itertools.pairwise(weights))
    if ok:
        assert [s.weight for s in RolloutSpec(steps=steps).steps] == weights
    else:
        with pytest.raises(ValidationError, match=r"steps: weights must rise and end at 1\.0"):
            RolloutSpec(steps=steps)


@given(st.sampled_from(sorted(ROLLOUT_METRICS)), st.floats(-1, 10, allow_nan=False), st.floats(-1, 10, allow_nan=False))
def test_a_success_condition_must_be_no_worse_than_the_failure_condition(name: str, success: float,
                                                                         failure: float) -> None:
    lower = ROLLOUT_METRICS[name]
    ok = success <= failure if lower else success >= failure
    rule = {name: MetricCondition(success=success, failure=failure)}
    if ok:
        assert RolloutSpec(analysis=rule).analysis[name].success == success
    else:
        with pytest.raises(ValidationError, match=f"analysis.{name}"):
            RolloutSpec(analysis=rule)


@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 100), st.floats(0, 1), st.floats(0, 5000)),
                min_size=1, max_size=8), st.integers(0, 3))
def test_every_analysis_is_one_outcome_with_its_action_and_weight(raw: list, step: int) -> None:
    measured = [StepEvidence(seconds, RouteStats(1000, 5, 10.0), RouteStats(n, min(e, n), 12.0), d, 1 - d / 2, 0.0)
                for n, e, d, seconds in raw]
    a = judge_step(step, measured, POLICY)
    expected = {"Running": ("wait", None), "Failed": ("abort", 0.0), "Inconclusive": ("pause", None)}
    if a.outcome == "Successful":
        assert (a.action, a.next_weight) == (("promote", 1.0) if step == 3 else ("next", POLICY.steps[step + 1].weight))
    else:
        assert (a.action, a.next_weight) == expected[a.outcome]
    assert a.reasons and a.measurements == len(measured)
    if a.outcome == "Successful":  # never promoted on too little traffic or time
        assert measured[-1].candidate.requests >= POLICY.steps[step].min_requests
        assert measured[-1].elapsed_seconds >= POLICY.steps[step].min_seconds


def _log(n_champion: int, n_candidate: int, shift: float = 0.0, seed: int = 0, shadow: bool = False):  # type: ignore[no-untyped-def]
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for route, n, offset in (("champion", n_champion, 0.0), ("canary", n_candidate, shift)):
        scores = np.clip(rng.beta(2, 5, n) + offset, 0, 1)
        rows.append(pd.DataFrame({"request_id": [f"{route}-{i}" for i in range(n)], "route": route, "score": scores,
                                  "prediction": (scores >= 0.5).astype(int), "latency_ms": rng.gamma(2, 3, n)}))
    if shadow:  # the candidate scores the champion's requests in shadow: disagrees on every tenth
        champ = rows[0]
        flipped = champ["prediction"].where(champ.index % 10 != 0, 1 - champ["prediction"])
        rows.append(champ.assign(route="shadow", prediction=flipped))
    return pd.concat(rows, ignore_index=True)


def test_the_evidence_of_a_step_comes_from_the_prediction_log() -> None:
    import pandas as pd

    from ctloop.monitoring.rollout import measure_step

    log = _log(2000, 300, shadow=True)
    e = measure_step(log, 120.0, errors={"canary": 3})
    assert (e.champion.requests, e.candidate.requests, e.candidate.errors) == (2000, 303, 3)
    assert e.candidate.p99_ms is not None and e.champion.p99_ms is not None
    assert e.score_distance is not None and e.score_distance < 0.1  # the same model: close distributions
    assert e.decision_agreement == pytest.approx(0.9)
    assert e.quality_drop is None and e.labeled == 0  # no labels yet: not measured

    served = log[log["route"] != "shadow"]
    labels = pd.DataFrame({"request_id": served["request_id"], "label": served["prediction"]})  # both routes right
    labeled = measure_step(log, 120.0, labels=labels, quality_metric="accuracy_score", min_labeled=50)
    assert labeled.labeled == 300 and labeled.quality_drop == pytest.approx(0.0)
    worse = labels.assign(label=labels["label"].where(~labels["request_id"].str.startswith("canary"),
                                                      1 - labels["label"]))  # the candidate wrong on every label
    assert measure_step(log, 120.0, labels=worse, quality_metric="accuracy_score").quality_drop == pytest.approx(1.0)


def test_a_candidate_whose_scores_shift_is_failed_by_the_analysis() -> None:
    from ctloop.monitoring.rollout import measure_step

    same, shifted = measure_step(_log(2000, 400), 120.0), measure_step(_log(2000, 400, shift=0.3), 120.0)
    policy = RolloutSpec(analysis={"score_distance": MetricCondition(success=0.1, failure=0.3)})
    assert judge_step(0, [same], policy).outcome == "Successful"
    failed = judge_step(0, [shifted], policy)
    assert failed.outcome == "Failed" and failed.next_weight == 0.0
    assert shifted.score_distance is not None and shifted.score_distance > 0.3
