"""The automatic-rollback decision (pure): only during the bake period, only with enough labels, only
against a real reference window of the previous champion, and only beyond the threshold."""

from __future__ import annotations

from datetime import date, timedelta

from ctloop.core.params import RollbackPolicy
from ctloop.decisions.rollback import decide_rollback

W = date(2026, 3, 10)
POLICY = RollbackPolicy(bake_days=3, max_quality_drop=0.05, comparable_windows=3, min_labeled_rows=100)
HISTORY = [(W - timedelta(days=d), q) for d, q in ((9, 0.70), (8, 0.84), (7, 0.85), (6, 0.83))]


def _q(value: float | None, day: date | None = W - timedelta(days=1), rows: int = 500) -> dict:
    return {"quality": value, "quality_window": day.isoformat() if day else None, "labeled_rows": rows}


def test_a_drop_beyond_the_threshold_during_the_bake_period_rolls_back() -> None:
    d = decide_rollback(W, POLICY, "roc_auc", "5", "4", W - timedelta(days=2), _q(0.74), HISTORY)
    assert d.rollback and d.status == "rollback"
    assert d.previous_quality is not None and abs(d.previous_quality - 0.84) < 1e-9  # the last 3 windows only
    assert "v5" in d.reasons[0] and "v4" in d.reasons[0] and "window 2 of 3" in d.reasons[0]


def test_within_the_threshold_is_healthy() -> None:
    d = decide_rollback(W, POLICY, "roc_auc", "5", "4", W - timedelta(days=2), _q(0.81), HISTORY)
    assert not d.rollback and d.status == "healthy"


def test_outside_the_bake_period_nothing_is_judged() -> None:
    d = decide_rollback(W, POLICY, "roc_auc", "5", "4", W - timedelta(days=10), _q(0.50), HISTORY)
    assert not d.rollback and d.status == "not_baking"


def test_missing_labels_previous_or_reference_never_roll_back() -> None:
    assert decide_rollback(W, POLICY, "roc_auc", "5", "4", W, _q(None, None), HISTORY).status == "no_labels"
    assert decide_rollback(W, POLICY, "roc_auc", "5", "4", W - timedelta(days=1), _q(0.5, rows=20),
                           HISTORY).status == "no_labels"
    assert decide_rollback(W, POLICY, "roc_auc", "5", None, W, _q(0.5), HISTORY).status == "no_previous"
    assert decide_rollback(W, POLICY, "roc_auc", "5", "4", W - timedelta(days=1), _q(0.5), []).status == "no_reference"
    off = POLICY.model_copy(update={"enabled": False})
    assert decide_rollback(W, off, "roc_auc", "5", "4", W, _q(0.1), HISTORY).status == "disabled"


def test_the_replay_on_the_same_requests_is_preferred_to_history() -> None:
    """After drift the previous champion's old windows are not comparable; the same requests are."""
    d = decide_rollback(W, POLICY, "roc_auc", "5", "4", W - timedelta(days=1), _q(0.78), HISTORY, previous_replay=0.80)
    assert d.status == "healthy" and d.previous_quality == 0.80 and "replayed" in d.reasons[0]
    bad = decide_rollback(W, POLICY, "roc_auc", "5", "4", W - timedelta(days=1), _q(0.70), HISTORY, previous_replay=0.80)
    assert bad.rollback and bad.previous_windows == [(W - timedelta(days=1)).isoformat()]
