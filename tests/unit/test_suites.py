"""Each evaluation suite against a model built to fail it, and the gate turning suite failures into a
rejection with the suite's reasons."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ctloop.core.params import get_params
from ctloop.data.simulator import SimulationSpec, simulate_day
from ctloop.decisions.gate import decide
from ctloop.estimators.pipeline import build_pipeline
from ctloop.evaluation.records import ModelEvaluation
from ctloop.evaluation.suites import (
    adversarial_suite,
    behavioural_suite,
    budgets_suite,
    golden_suite,
    shadow_suite,
)


@pytest.fixture(scope="module")
def world() -> dict[str, Any]:
    params = get_params()
    contract = params.dataset
    train = pd.concat([simulate_day(date(2026, 1, d), SimulationSpec(rows=2000)) for d in range(1, 4)])
    test = simulate_day(date(2026, 1, 5), SimulationSpec(rows=2000))
    good = build_pipeline(contract, "logistic_regression", {"max_iter": 1000}).fit(
        train[contract.features], train[contract.target])
    return {"params": params, "contract": contract, "train": train, "test": test, "good": good}


class Inverted:
    """Ranks every case the wrong way round."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        p = self.model.predict_proba(x)
        return p[:, ::-1]


class NightOwl:
    """Escalates more at night: an 'irrelevant' field moves its decisions."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        p = self.model.predict_proba(x)[:, 1] + 0.3 * (x["hour_of_day"].to_numpy() >= 20)
        p = np.clip(p, 0, 1)
        return np.column_stack([1 - p, p])


class Slow:
    def __init__(self, model: Any, seconds: float) -> None:
        self.model, self.seconds = model, seconds

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        time.sleep(self.seconds)
        return self.model.predict_proba(x)


def test_the_good_model_passes_every_suite(world) -> None:  # type: ignore[no-untyped-def]
    params, contract, test, good = world["params"], world["contract"], world["test"], world["good"]
    spec = params.evaluation
    assert behavioural_suite(good, test.head(300), contract, spec).passed
    adversarial = adversarial_suite(good, test, contract, spec)
    assert adversarial.passed and adversarial.metrics["adversarial_crashes"] == 0
    assert adversarial.metrics["adversarial_cases"] > 50


def test_a_model_that_ignores_sentiment_fails_the_directional_check(world) -> None:  # type: ignore[no-untyped-def]
    params, contract, train, test = world["params"], world["contract"], world["train"], world["test"]
    blind = build_pipeline(contract, "logistic_regression", {"max_iter": 1000}).fit(
        train[contract.features].assign(sentiment=0.0), train[contract.target])
    result = behavioural_suite(blind, test.head(300), contract, params.evaluation)
    failed = {c.name: c for c in result.checks if not c.passed}
    assert not result.passed and "directional:sentiment" in failed
    assert "mean effect +0.0000" in failed["directional:sentiment"].detail
    assert "directional:prior_contacts_30d" not in failed


def test_a_model_moved_by_an_irrelevant_field_fails_invariance(world) -> None:  # type: ignore[no-untyped-def]
    params, contract, test, good = world["params"], world["contract"], world["test"], world["good"]
    result = behavioural_suite(NightOwl(good), test.head(300), contract, params.evaluation)
    failed = {c.name: c for c in result.checks if not c.passed}
    assert "invariance:hour_of_day" in failed and failed["invariance:hour_of_day"].examples
    assert "invariance:ticket_id" not in failed


def test_an_inverted_model_fails_minimum_functionality_and_the_golden_set_with_flips(world) -> None:  # type: ignore[no-untyped-def]
    params, contract, test, good = world["params"], world["contract"], world["test"], world["good"]
    spec = params.evaluation
    scores = good.predict_proba(test[contract.features])[:, 1]
    from ctloop.evaluation.golden import seed_cases

    cases = seed_cases(test, scores, contract, 20, "test")
    assert len(cases) == 40
    assert golden_suite(good, None, cases, contract, spec).passed
    result = golden_suite(Inverted(good), good, cases, contract, spec)
    assert not result.passed and result.metrics["golden_flips"] == 40
    flips = next(c for c in result.checks if c.name == "flips")
    assert not flips.passed and "not allowed" in flips.detail
    allowed = spec.model_copy(update={"golden": spec.golden.model_copy(
        update={"allowed_flips": [c["case_id"] for c in cases], "min_pass_rate": 0.0})})
    assert golden_suite(Inverted(good), good, cases, contract, allowed).passed
    behaviour = behavioural_suite(Inverted(good), test.head(300), contract, spec)
    assert any(c.name.startswith("minimum:") and not c.passed for c in behaviour.checks)


def test_a_pipeline_without_imputation_crashes_on_nulls_and_is_rejected_by_the_gate(world) -> None:  # type: ignore[no-untyped-def]
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    params, contract, train, test = world["params"], world["contract"], world["train"], world["test"]
    fragile = Pipeline([("features", ColumnTransformer([
        ("n", StandardScaler(), contract.numeric_features),
        ("c", OneHotEncoder(handle_unknown="ignore"), contract.categorical_features)])),
        ("model", LogisticRegression(max_iter=1000))]).fit(train[contract.features], train[contract.target])
    result = adversarial_suite(fragile, test, contract, params.evaluation)
    assert not result.passed
    crashed = [c for c in result.checks if c.name.startswith("adversarial:") and not c.passed]
    assert any("null" in c.name or "NaN" in c.name for c in crashed) and "crashed" in crashed[0].detail
    decision = decide(ModelEvaluation("2", {"roc_auc": 0.85, "f1_score": 0.6, "log_loss": 0.4, "brier_score": 0.13}),
                      None, params.gate, [result.to_dict()])
    assert not decision.passed
    assert any(c.check == "suite:adversarial" and not c.passed for c in decision.checks)
    assert any("crashed" in r for r in decision.reasons)


def test_budgets_fail_a_slow_model_and_a_calibration_regression(world) -> None:  # type: ignore[no-untyped-def]
    params, contract, test, good = world["params"], world["contract"], world["test"], world["good"]
    spec = params.evaluation.model_copy(update={"budgets": params.evaluation.budgets.model_copy(
        update={"p99_latency_ms": 5.0, "latency_samples": 10, "max_model_mb": 0.01, "min_rows_per_second": 1e9,
                "throughput_rows": 200})})
    result = budgets_suite(Slow(good, 0.3), good, test, contract, spec, {"brier_score": 0.20, "ece": 0.02},
                           {"brier_score": 0.13, "ece": 0.015})
    failed = {c.name for c in result.checks if not c.passed}
    assert failed == {"latency", "latency:vs_champion", "throughput", "throughput:vs_champion", "size",
                      "calibration:brier_score"}, result.checks
    assert result.metrics["latency_p99_ms"] >= 20 and result.metrics["latency_p99_ratio"] > 3
    assert result.metrics["champion_latency_p99_ms"] < result.metrics["latency_p99_ms"]


def test_shadow_replay_judges_agreement_and_labeled_quality(world) -> None:  # type: ignore[no-untyped-def]
    params, contract, test, good = world["params"], world["contract"], world["test"], world["good"]
    spec = params.evaluation
    scores = good.predict_proba(test[contract.features])[:, 1]
    logged = test.assign(request_id=[f"r{i}" for i in range(len(test))], score=scores,
                         prediction=(scores >= 0.5).astype(int)).reset_index(drop=True)
    labels = pd.DataFrame({"request_id": logged["request_id"], "label": test[contract.target].to_numpy()})
    same = shadow_suite(good, logged, labels, contract, spec)
    assert same.passed and same.metrics["shadow_agreement"] == 1.0
    worse = shadow_suite(Inverted(good), logged, labels, contract, spec)
    assert not worse.passed and worse.metrics["shadow_agreement"] < 0.5
    assert worse.metrics["shadow_roc_auc"] < worse.metrics["shadow_champion_roc_auc"]
    # the logged champion was the bad one: a challenger that disagrees but is better passes
    flipped = logged.assign(score=1 - scores, prediction=(1 - scores >= 0.5).astype(int))
    better = shadow_suite(good, flipped, labels, contract, spec)
    assert better.passed and better.metrics["shadow_agreement"] < 0.5
    assert shadow_suite(good, logged.head(10), None, contract, spec).skipped
