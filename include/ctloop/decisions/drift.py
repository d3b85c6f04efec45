"""The monitoring policy: a pure function from one window's evidence to a decision record with reasons.

Triggers on: dataset drift (drift share >= threshold), prediction drift, or a labeled quality drop
beyond the threshold. Never triggers on: a missing or empty window, fewer rows than ``min_rows``
("insufficient data"), while a retrain is queued or running or a staged rollout is in progress, or within the
cooldown of the last trigger.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from ctloop.core.task import worse_by

Status = Literal["drift", "no_drift", "insufficient_data", "missing", "suppressed"]


@dataclass(frozen=True)
class WindowEvidence:
    window: date
    rows: int
    partition_exists: bool
    drift_share: float | None = None
    drifted_columns: tuple[str, ...] = ()
    prediction_drift: bool | None = None
    prediction_drift_score: float | None = None
    quality: float | None = None  # champion's quality on the newest labeled window
    quality_window: date | None = None
    reference_quality: float | None = None  # the champion's test-set quality
    labeled_rows: int = 0
    unseen: dict[str, float] = field(default_factory=dict)  # column -> share of rows with unseen categories
    # positive share of the labeled window (regression: share of labels above the training target's median)
    label_share: float | None = None
    reference_label_share: float | None = None  # the same share in the champion's training data
    missing: dict[str, tuple[float, float]] = field(default_factory=dict)  # column -> (reference, window) nulls


@dataclass(frozen=True)
class MonitorPolicy:
    min_rows: int
    drift_share: float
    prediction_drift: bool
    max_quality_drop: float
    min_labeled_rows: int
    cooldown_hours: float
    min_drift_days: int
    max_unseen_share: float = 0.05
    max_label_shift: float = 0.1
    quality_metric: str = "roc_auc"  # its direction decides what a drop is (an error metric drops by rising)
    task: str = "binary"


@dataclass(frozen=True)
class DriftDecision:
    window: date
    status: Status
    trigger: bool
    reasons: list[str]
    drifted_columns: list[str] = field(default_factory=list)
    recommended_window_days: int | None = None
    estimated_drift_start: date | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["window"] = self.window.isoformat()
        d["estimated_drift_start"] = self.estimated_drift_start.isoformat() if self.estimated_drift_start else None
        return d


def decide(ev: WindowEvidence, policy: MonitorPolicy, last_trigger_window: date | None = None,
           retrains_in_flight: int = 0, drift_history: list[date] | None = None,
           rollout_candidate: str | None = None) -> DriftDecision:
    """``drift_history``: earlier windows whose evidence showed drift (for the drift-start estimate);
    ``rollout_candidate``: the version a staged rollout is bringing in (a retrain answered the world already:
    another would supersede it before it is judged)."""
    if not ev.partition_exists:
        return DriftDecision(ev.window, "missing", False, [f"no prediction log partition for {ev.window}"])
    if ev.rows == 0:
        return DriftDecision(ev.window, "missing", False, [f"prediction log for {ev.window} is empty"])
    if ev.rows < policy.min_rows:
        return DriftDecision(ev.window, "insufficient_data", False,
                             [f"{ev.rows} rows in the window, fewer than min_rows {policy.min_rows}: not judged"])
    reasons: list[str] = []
    if ev.drift_share is not None and ev.drift_share >= policy.drift_share:
        reasons.append(f"data drift: {ev.drift_share:.0%} of features drifted (>= {policy.drift_share:.0%}): "
                       f"{', '.join(ev.drifted_columns)}")
    for column, (before, now) in sorted(ev.missing.items()):
        reasons.append(f"missing values in {column}: {now:.0%} of rows null (reference {before:.0%}); Evidently "
                       "drops nulls, so its drift test cannot see this")
    for column, share in sorted(ev.unseen.items()):
        if share > policy.max_unseen_share:
            reasons.append(f"new categories in {column}: {share:.0%} of rows hold values never seen in training "
                           f"(> {policy.max_unseen_share:.0%})")
    if policy.prediction_drift and ev.prediction_drift:
        score = f" (score {ev.prediction_drift_score:.3f})" if ev.prediction_drift_score is not None else ""
        reasons.append(f"prediction drift: the score distribution moved{score}")
    if (ev.quality is not None and ev.reference_quality is not None and ev.labeled_rows >= policy.min_labeled_rows
            and worse_by(policy.quality_metric, ev.reference_quality, ev.quality) > policy.max_quality_drop):
        reasons.append(f"quality drop: {policy.quality_metric} {ev.quality:.4f} on {ev.labeled_rows} labeled rows of "
                       f"{ev.quality_window} vs {ev.reference_quality:.4f} on the champion's test set "
                       f"(drop > {policy.max_quality_drop})")
    if (ev.label_share is not None and ev.reference_label_share is not None
            and ev.labeled_rows >= policy.min_labeled_rows
            and abs(ev.label_share - ev.reference_label_share) > policy.max_label_shift):
        if policy.task == "multiclass":  # label_share: the total variation distance from training's class shares
            reasons.append(f"label shift: the class shares of {ev.quality_window} are {ev.label_share:.1%} apart "
                           f"from training's (total variation; > {policy.max_label_shift:.0%})")
        else:
            what = "labels above the training target's median" if policy.task == "regression" else "positive labels"
            reasons.append(f"label shift: {ev.label_share:.1%} {what} in {ev.quality_window} vs "
                           f"{ev.reference_label_share:.1%} in training (> {policy.max_label_shift:.0%} apart)")
    if not reasons:
        notes = [f"drift share {ev.drift_share:.0%} below {policy.drift_share:.0%}"
                 + (f" ({', '.join(ev.drifted_columns)})" if ev.drifted_columns else "")
                 if ev.drift_share is not None else "no drift measured"]
        if ev.quality is not None:
            notes.append(f"labeled quality {ev.quality:.4f} ({ev.labeled_rows} rows of {ev.quality_window})")
        return DriftDecision(ev.window, "no_drift", False, notes)

    start = _drift_start(ev.window, drift_history or [])
    if ev.quality_window is not None and any(r.startswith(("quality drop", "label shift")) for r in reasons):
        start = min(start, ev.quality_window)  # label evidence is late: the drift began at the labeled window
    days_since = (ev.window - start).days + 1
    recommended = days_since if days_since >= policy.min_drift_days else None
    columns = list(ev.drifted_columns)

    def decision(status: Status, trigger: bool, why: list[str]) -> DriftDecision:
        return DriftDecision(ev.window, status, trigger, why, columns, recommended, start)

    if retrains_in_flight > 0:
        return decision("suppressed", False,
                        [*reasons, f"not triggered: {retrains_in_flight} retrain run(s) queued or running"])
    if rollout_candidate is not None:
        return decision("suppressed", False,
                        [*reasons, f"not triggered: the staged rollout of v{rollout_candidate} is in progress "
                                   "(a new challenger would supersede it)"])
    if last_trigger_window is not None:
        since = datetime.combine(ev.window, datetime.min.time()) - datetime.combine(last_trigger_window, datetime.min.time())
        if since < timedelta(hours=policy.cooldown_hours):
            return decision("suppressed", False,
                            [*reasons, f"not triggered: cooldown, last trigger on {last_trigger_window} "
                                       f"(< {policy.cooldown_hours:g} h)"])
    return decision("drift", True, reasons)


def _drift_start(window: date, history: list[date]) -> date:
    """The first day of the unbroken run of drifted windows that ends at ``window``."""
    drifted = set(history) | {window}
    start = window
    while start - timedelta(days=1) in drifted:
        start -= timedelta(days=1)
    return start
