from __future__ import annotations

from datetime import date, timedelta

from ctloop.decisions.drift import MonitorPolicy, WindowEvidence, decide

W = date(2026, 2, 10)
POLICY = MonitorPolicy(min_rows=500, drift_share=0.2, prediction_drift=True, max_quality_drop=0.05,
                       min_labeled_rows=300, cooldown_hours=48, min_drift_days=3, max_unseen_share=0.05,
                       max_label_shift=0.1)


def ev(**kw: object) -> WindowEvidence:
    base: dict = {"window": W, "rows": 2000, "partition_exists": True, "drift_share": 0.0, "prediction_drift": False}
    return WindowEvidence(**{**base, **kw})


def test_quiet_window_is_no_drift() -> None:
    d = decide(ev(drift_share=0.1, drifted_columns=("hour_of_day",)), POLICY)
    assert (d.status, d.trigger) == ("no_drift", False)
    assert d.reasons[0] == "drift share 10% below 20% (hour_of_day)"


def test_drift_share_at_threshold_triggers_with_reasons() -> None:
    d = decide(ev(drift_share=0.2, drifted_columns=("message_length", "product_area")), POLICY)
    assert d.trigger and d.status == "drift"
    assert d.reasons == ["data drift: 20% of features drifted (>= 20%): message_length, product_area"]
    assert d.drifted_columns == ["message_length", "product_area"]


def test_prediction_drift_alone_triggers_and_can_be_switched_off() -> None:
    assert decide(ev(prediction_drift=True, prediction_drift_score=2.5), POLICY).trigger
    off = MonitorPolicy(**{**POLICY.__dict__, "prediction_drift": False})
    assert not decide(ev(prediction_drift=True), off).trigger


def test_unseen_categories_trigger_above_tolerance() -> None:
    assert decide(ev(unseen={"language": 0.25}), POLICY).reasons[0].startswith("new categories in language: 25%")
    assert not decide(ev(unseen={"language": 0.01}), POLICY).trigger


def test_quality_drop_needs_enough_labels() -> None:
    drop = {"quality": 0.60, "reference_quality": 0.84, "quality_window": W - timedelta(days=2)}
    assert decide(ev(**drop, labeled_rows=900), POLICY).trigger
    assert not decide(ev(**drop, labeled_rows=100), POLICY).trigger
    assert not decide(ev(quality=0.81, reference_quality=0.84, labeled_rows=900), POLICY).trigger


def test_label_shift_triggers() -> None:
    d = decide(ev(label_share=0.52, reference_label_share=0.36, labeled_rows=900, quality_window=W), POLICY)
    assert d.trigger and d.reasons[0].startswith("label shift: 52.0% positive labels")


def test_min_rows_is_insufficient_data_never_a_trigger() -> None:
    d = decide(ev(rows=120, drift_share=0.9, prediction_drift=True), POLICY)
    assert (d.status, d.trigger) == ("insufficient_data", False)


def test_missing_or_empty_partition_is_reported_not_drift() -> None:
    assert decide(ev(partition_exists=False, rows=0), POLICY).status == "missing"
    empty = decide(ev(rows=0), POLICY)
    assert (empty.status, empty.trigger) == ("missing", False) and "empty" in empty.reasons[0]


def test_cooldown_suppresses_a_second_trigger() -> None:
    drifting = ev(drift_share=0.5, drifted_columns=("a", "b"))
    d = decide(drifting, POLICY, last_trigger_window=W - timedelta(days=1))
    assert (d.status, d.trigger) == ("suppressed", False) and "cooldown" in d.reasons[-1]
    assert decide(drifting, POLICY, last_trigger_window=W - timedelta(days=2)).trigger


def test_no_trigger_while_a_retrain_is_queued_or_running() -> None:
    d = decide(ev(drift_share=0.5), POLICY, retrains_in_flight=1)
    assert (d.status, d.trigger) == ("suppressed", False) and "queued or running" in d.reasons[-1]


def test_no_trigger_while_a_staged_rollout_brings_a_retrained_candidate_in() -> None:
    d = decide(ev(drift_share=0.5), POLICY, rollout_candidate="7")
    assert (d.status, d.trigger) == ("suppressed", False)
    assert d.reasons[-1].startswith("not triggered: the staged rollout of v7 is in progress")
    assert d.reasons[0].startswith("data drift: 50%")  # the evidence is still reported
    assert decide(ev(drift_share=0.5), POLICY, rollout_candidate=None).trigger


def test_drift_start_and_recommended_window() -> None:
    history = [W - timedelta(days=3), W - timedelta(days=2), W - timedelta(days=1), W - timedelta(days=6)]
    d = decide(ev(drift_share=0.5), POLICY, drift_history=history)
    assert d.estimated_drift_start == W - timedelta(days=3) and d.recommended_window_days == 4
    fresh = decide(ev(drift_share=0.5), POLICY)
    assert fresh.estimated_drift_start == W and fresh.recommended_window_days is None  # too little drifted data yet


def test_label_evidence_dates_the_drift_at_the_labeled_window() -> None:
    d = decide(ev(quality=0.6, reference_quality=0.84, labeled_rows=900, quality_window=W - timedelta(days=2)), POLICY)
    assert d.trigger and d.estimated_drift_start == W - timedelta(days=2) and d.recommended_window_days == 3


def test_labeled_quality_uses_evidently_and_matches_the_definition() -> None:
    import numpy as np
    import pandas as pd
    from sklearn.metrics import accuracy_score, roc_auc_score

    from ctloop.monitoring.quality import quality_of

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 1000)
    score = np.clip(0.35 * y + 0.65 * rng.random(1000), 0, 1)
    joined = pd.DataFrame({"label": y, "score": score, "prediction": (score >= 0.5).astype(int)})
    assert abs(quality_of("roc_auc", joined) - roc_auc_score(y, score)) < 1e-9
    assert abs(quality_of("accuracy_score", joined) - accuracy_score(y, joined["prediction"])) < 1e-9
