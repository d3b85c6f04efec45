from __future__ import annotations

import io
from datetime import date

import numpy as np
import pandas as pd
import pytest

from ctloop.data.simulator import SCENARIOS, SimulationSpec, simulate_day

DAY = date(2026, 3, 4)  # a Wednesday
START = date(2026, 3, 1)
FEATURES_ONLY = ["channel", "product_area", "customer_tier", "language", "message_length", "sentiment",
                 "prior_contacts_30d", "account_age_days", "first_response_minutes", "hour_of_day", "created_at"]


def _bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def _changed(a: pd.DataFrame, b: pd.DataFrame) -> set[str]:
    return {c for c in a.columns if c in b.columns and not a[c].equals(b[c])} | (set(a.columns) ^ set(b.columns))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_same_arguments_same_bytes(scenario: str) -> None:
    spec = SimulationSpec(scenario=scenario, drift_start=START, rows=500)
    assert _bytes(simulate_day(DAY, spec)) == _bytes(simulate_day(DAY, spec))


def test_different_days_and_seeds_differ() -> None:
    spec = SimulationSpec(rows=300)
    assert not simulate_day(DAY, spec).equals(simulate_day(date(2026, 3, 5), spec))
    assert not simulate_day(DAY, spec).equals(simulate_day(DAY, SimulationSpec(rows=300, seed=8)))


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "seasonal"])
def test_scenarios_match_stable_before_their_start(scenario: str) -> None:
    before = date(2026, 2, 27)
    assert simulate_day(before, SimulationSpec(scenario=scenario, drift_start=START)).equals(
        simulate_day(before, SimulationSpec()))


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("covariate_shift", {"product_area", "message_length", "escalated"}),
        ("concept_shift", {"escalated"}),
        ("label_shift", {"escalated"}),
        ("upstream_bug", {"first_response_minutes"}),
        ("new_category", {"language"}),
        ("schema_break", {"sentiment", "sentiment_score"}),
    ],
)
def test_each_scenario_moves_what_it_says_and_nothing_else(scenario: str, expected: set[str]) -> None:
    stable = simulate_day(DAY, SimulationSpec())
    drifted = simulate_day(DAY, SimulationSpec(scenario=scenario, drift_start=START))
    assert _changed(drifted, stable) == expected


def test_scenario_effects_have_the_right_direction() -> None:
    stable = simulate_day(DAY, SimulationSpec(rows=5000))

    def sim(s: str) -> pd.DataFrame:
        return simulate_day(DAY, SimulationSpec(scenario=s, drift_start=START, rows=5000))

    cov = sim("covariate_shift")
    assert cov["product_area"].isin(["shipping", "returns"]).mean() > stable["product_area"].isin(["shipping", "returns"]).mean() + 0.2
    assert cov["message_length"].median() > stable["message_length"].median() * 1.5
    assert sim("label_shift")["escalated"].mean() > stable["escalated"].mean() + 0.1
    np.testing.assert_allclose(sim("upstream_bug")["first_response_minutes"], stable["first_response_minutes"] * 60, rtol=1e-6)
    assert (sim("new_category")["language"] == "zh").mean() > 0.15
    assert sim("schema_break")["sentiment_score"].equals(stable["sentiment"])


def test_seasonal_is_a_weekly_cycle() -> None:
    spec = SimulationSpec(scenario="seasonal", rows=2000)
    weekday, saturday = simulate_day(date(2026, 3, 4), spec), simulate_day(date(2026, 3, 7), spec)
    assert len(weekday) > len(saturday) * 1.5
    assert saturday["hour_of_day"].between(9, 17).mean() < weekday["hour_of_day"].between(9, 17).mean()


def test_concept_shift_breaks_an_old_model_but_not_the_inputs() -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cat = ["channel", "product_area", "customer_tier", "language"]
    num = ["message_length", "sentiment", "prior_contacts_30d", "account_age_days", "first_response_minutes"]
    train = pd.concat([simulate_day(date(2026, 2, d), SimulationSpec()) for d in range(1, 8)])
    model = make_pipeline(make_column_transformer((OneHotEncoder(handle_unknown="ignore"), cat), (StandardScaler(), num)),
                          LogisticRegression(max_iter=500)).fit(train[cat + num], train["escalated"])
    test = simulate_day(DAY, SimulationSpec())
    auc = roc_auc_score(test["escalated"], model.predict_proba(test[cat + num])[:, 1])
    assert 0.8 <= auc <= 0.92, "the rule must be learnable but noisy"
    shifted = simulate_day(DAY, SimulationSpec(scenario="concept_shift", drift_start=START))
    assert shifted[FEATURES_ONLY].equals(test[FEATURES_ONLY])
    assert roc_auc_score(shifted["escalated"], model.predict_proba(shifted[cat + num])[:, 1]) < auc - 0.15


def test_spec_rejects_unknown_scenario() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        SimulationSpec(scenario="meteor")
