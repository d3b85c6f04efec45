from __future__ import annotations

from pathlib import Path

import pytest

from ctloop.core.params import GateSpec, load_params
from ctloop.decisions.gate import GateDecision, decide
from ctloop.evaluation.records import ModelEvaluation

POLICY = load_params(Path(__file__).resolve().parents[2] / "models" / "support_escalation.yaml").gate
GOOD = {"roc_auc": 0.84, "f1_score": 0.60, "log_loss": 0.43, "brier_score": 0.14}
SLICES = {"channel": {"chat": {"rows": 900.0, "roc_auc": 0.83}, "phone": {"rows": 300.0, "roc_auc": 0.86}}}


def _eval(version: str, slices: dict | None = None, **metrics: float) -> ModelEvaluation:
    return ModelEvaluation(version, {**GOOD, **metrics}, slices if slices is not None else SLICES)


def test_first_model_is_judged_on_floors_only() -> None:
    d = decide(_eval("1"), None, POLICY)
    assert d.passed and d.champion is None
    assert {c.check for c in d.checks} == {"floor", "slice_floor"}


def test_first_model_below_a_floor_is_rejected() -> None:
    d = decide(_eval("1", roc_auc=0.70), None, POLICY)
    assert not d.passed
    assert any("roc_auc 0.7000 fails the floor >= 0.7500" in r for r in d.reasons)


def test_better_challenger_is_promoted() -> None:
    d = decide(_eval("2", roc_auc=0.86, f1_score=0.62, log_loss=0.41, brier_score=0.13), _eval("1"), POLICY)
    assert d.passed and d.champion == "1"
    assert all(c.passed for c in d.checks)


def test_worse_beyond_tolerance_is_rejected_with_the_metric_named() -> None:
    d = decide(_eval("2", roc_auc=0.80), _eval("1"), POLICY)
    assert not d.passed
    assert d.reasons == ["roc_auc 0.8000 vs champion v1 0.8400 (change -0.0400): worse beyond tolerance 0.01"]


def test_lower_is_better_metrics_use_their_direction() -> None:
    worse = decide(_eval("2", log_loss=0.50), _eval("1"), POLICY)
    assert not worse.passed and "log_loss" in worse.reasons[0]
    assert decide(_eval("2", log_loss=0.40), _eval("1"), POLICY).passed


@pytest.mark.parametrize(("behaviour", "passed"), [("promote", True), ("reject", False)])
def test_within_tolerance_follows_configuration(behaviour: str, passed: bool) -> None:
    policy = POLICY.model_copy(update={"within_tolerance": behaviour})
    d = decide(_eval("2", roc_auc=0.835), _eval("1"), policy)
    assert d.passed is passed
    assert any("within tolerance" in c.detail for c in d.checks)


def test_min_relative_change_requires_a_real_improvement() -> None:
    rules = dict(POLICY.metrics)
    rules["roc_auc"] = rules["roc_auc"].model_copy(update={"min_relative_change": 0.05, "tolerance": 0.0})
    policy = GateSpec(metrics=rules, within_tolerance="reject", slices=POLICY.slices)
    assert not decide(_eval("2", roc_auc=0.85), _eval("1"), policy).passed  # +1.2% < 5%
    assert decide(_eval("2", roc_auc=0.89), _eval("1"), policy).passed


def test_slice_regression_is_rejected() -> None:
    slices = {"channel": {"chat": {"rows": 900.0, "roc_auc": 0.83}, "phone": {"rows": 300.0, "roc_auc": 0.70}}}
    d = decide(_eval("2", slices=slices), _eval("1"), POLICY)
    assert not d.passed
    assert any(c.check == "slice_regression" and "channel=phone" in c.detail for c in d.checks)


def test_slice_below_floor_is_rejected_but_small_slices_are_not_judged() -> None:
    slices = {"channel": {"chat": {"rows": 900.0, "roc_auc": 0.60}, "fax": {"rows": 5.0, "roc_auc": 0.1}}}
    d = decide(_eval("1", slices=slices), None, POLICY)
    assert not d.passed
    assert [c.detail for c in d.checks if not c.passed] == [
        "slice channel=chat (900 rows): roc_auc 0.6000 below the slice floor 0.6500"]


def test_missing_metric_is_rejected_with_reason() -> None:
    challenger = ModelEvaluation("2", {k: v for k, v in GOOD.items() if k != "f1_score"}, SLICES)
    d = decide(challenger, _eval("1"), POLICY)
    assert not d.passed and "f1_score: missing from the challenger's evaluation" in d.reasons


def test_decision_round_trips_as_a_record() -> None:
    d = decide(_eval("2", roc_auc=0.80), _eval("1"), POLICY)
    assert GateDecision.from_dict(d.to_dict()) == d
