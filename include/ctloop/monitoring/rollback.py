"""Automatic rollback while a new champion bakes.

For the first ``promotion.rollback.bake_days`` windows a champion serves, the monitor compares its
labeled quality (on requests it served, judged once their labels arrive) with what ``previous`` had on
its own last labeled windows as champion. A drop beyond ``max_quality_drop`` rolls back to ``previous``
(one compare-and-set step, audited, in the alias history), the rolled-back version loses its gate pass,
and the monitor emits the rollback alert Asset event. :func:`decide_rollback` is pure; the side effects
are in :func:`guard_champion`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ctloop.data.store import Lake
    from ctloop.params import Params, RollbackPolicy
    from ctloop.settings import Settings

Status = Literal["disabled", "no_previous", "not_baking", "no_labels", "no_reference", "healthy", "rollback"]


@dataclass(frozen=True)
class RollbackDecision:
    window: str
    status: Status
    rollback: bool
    champion: str | None
    previous: str | None
    reasons: list[str]
    champion_quality: float | None = None
    previous_quality: float | None = None
    quality_window: str | None = None
    previous_windows: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide_rollback(window: date, policy: RollbackPolicy, metric: str, champion: str, previous: str | None,
                    first_served: date, quality: dict[str, Any], previous_history: list[tuple[date, float]],
                    previous_replay: float | None = None) -> RollbackDecision:
    """Pure. ``first_served``: the first window the champion served; ``quality``: the monitor's labeled
    quality of this window (its ``quality_window`` and ``labeled_rows``); ``previous_replay``: the
    previous champion's quality on the very same labeled requests (replayed), the comparison of choice;
    ``previous_history``: its labeled quality per window while it was champion, oldest first (used when
    it cannot be replayed)."""
    def decision(status: Status, why: list[str], **kw: Any) -> RollbackDecision:
        return RollbackDecision(window.isoformat(), status, status == "rollback", champion, previous, why, **kw)

    if not policy.enabled:
        return decision("disabled", ["promotion.rollback.enabled is false"])
    if previous is None:
        return decision("no_previous", [f"v{champion} has no @previous to roll back to"])
    judged = quality.get("quality_window")
    if judged is None or quality.get("quality") is None:
        return decision("no_labels", [f"no labeled window of v{champion} yet"])
    judged_day = date.fromisoformat(str(judged))
    served = (judged_day - first_served).days
    if served < 0 or served >= policy.bake_days:
        return decision("not_baking", [f"v{champion} has served since {first_served}; the labeled window {judged} is "
                                       f"outside its {policy.bake_days}-window bake period"])
    rows = int(quality.get("labeled_rows") or 0)
    if rows < policy.min_labeled_rows:
        return decision("no_labels", [f"{rows} labeled rows on {judged}, fewer than {policy.min_labeled_rows}"])
    recent = previous_history[-policy.comparable_windows:]
    if previous_replay is not None:
        theirs, basis, used = previous_replay, "on the same requests, replayed", [str(judged)]
    elif recent:
        theirs = sum(q for _, q in recent) / len(recent)
        basis, used = f"on its last {len(recent)} labeled window(s) as champion", [d.isoformat() for d, _ in recent]
    else:
        return decision("no_reference", [f"no labeled window of v{previous} as champion to compare with"])
    mine = float(quality["quality"])
    common = {"champion_quality": mine, "previous_quality": theirs, "quality_window": str(judged),
              "previous_windows": used}
    drop = theirs - mine
    line = (f"{metric} of v{champion} on {judged} ({rows} labeled rows) {mine:.4f} vs v{previous} {theirs:.4f} "
            f"{basis}: drop {drop:+.4f}")
    if drop > policy.max_quality_drop:
        return decision("rollback", [f"{line}, beyond {policy.max_quality_drop} during the bake period "
                                     f"(window {served + 1} of {policy.bake_days})"], **common)
    return decision("healthy", [f"{line}, within {policy.max_quality_drop}"], **common)


def monitor_summaries(lake: Lake, before: date) -> list[dict[str, Any]]:
    base = lake.root / "reports" / "monitor"
    out = []
    for part in sorted(base.glob("dt=*")) if base.exists() else []:
        day = date.fromisoformat(part.name[3:])
        summary = part / "summary.json"
        if day < before and summary.exists():
            out.append(json.loads(summary.read_text()))
    return out


def replay_quality(lake: Lake, params: Params, settings: Settings, window: date, judged: date, champion: str,
                   previous: str) -> float | None:
    """``previous``'s quality on the labeled requests the champion served on ``judged`` (same rows, same
    labels, same metric), or None when they cannot be replayed."""
    import mlflow

    from ctloop.monitoring.monitor import SCORE, quality_of
    from ctloop.monitoring.prediction_log import labels_arrived, read_predictions
    from ctloop.registry.mlflow_registry import configure_mlflow
    from ctloop.serving.scoring import ScoringError, score_rows

    preds = read_predictions(lake, judged, params.dataset)
    preds = preds[(preds["model_version"].astype(str) == champion) & (preds["route"] != "shadow")]
    joined = preds.merge(labels_arrived(lake, window), on="request_id")
    if len(joined) < params.promotion.rollback.min_labeled_rows or joined["label"].nunique() < 2:
        return None
    configure_mlflow(settings)
    model = mlflow.sklearn.load_model(f"models:/{params.training.registered_model}/{previous}")
    try:
        scores = score_rows(model, joined, params.dataset).scores
    except ScoringError:
        return None
    threshold = params.evaluation.threshold
    replayed = joined.assign(**{SCORE: scores}).dropna(subset=[SCORE])
    replayed = replayed.assign(prediction=(replayed[SCORE] >= threshold).astype("int64"))
    return quality_of(params.monitoring.quality_metric, replayed)


def guard_champion(lake: Lake, params: Params, settings: Settings, window: date, quality: dict[str, Any],
                   actor: str = "ctloop_monitor") -> dict[str, Any]:
    """Decide, and roll back when the decision says so. Returns the decision (and the rollback)."""
    from ctloop.audit import record
    from ctloop.registry.mlflow_registry import CHAMPION, PREVIOUS, alias_version, configure_mlflow
    from ctloop.retrain import rollback_version

    client = configure_mlflow(settings)
    name = params.training.registered_model
    champion = alias_version(client, name, CHAMPION)
    if champion is None:
        return {"decision": None}
    previous = alias_version(client, name, PREVIOUS)
    summaries = monitor_summaries(lake, window)
    served = [date.fromisoformat(s["window"]) for s in summaries if str(s.get("champion")) == champion]
    if quality.get("quality_window"):  # labeled quality only counts requests this champion served
        served.append(date.fromisoformat(str(quality["quality_window"])))
    first_served = min(served) if served else window
    history = [(date.fromisoformat(s["quality_window"]), float(s["quality"])) for s in summaries
               if str(s.get("champion")) == previous and s.get("quality") is not None and s.get("quality_window")]
    policy = params.promotion.rollback
    replay = None
    if previous is not None and quality.get("quality_window") and quality.get("quality") is not None:
        replay = replay_quality(lake, params, settings, window, date.fromisoformat(str(quality["quality_window"])),
                                champion, previous)
    decision = decide_rollback(window, policy, params.monitoring.quality_metric, champion, previous, first_served,
                               quality, sorted(set(history)), replay)
    out = {"decision": decision.to_dict(), "rolled_back": None}
    if decision.rollback:
        reason = f"automatic rollback: {decision.reasons[0]}"
        out["rolled_back"] = rollback_version(params, settings, previous, reason, actor=actor,
                                              expected_champion=champion, dag_run=actor)
    elif decision.status == "healthy":
        record("rollback", f"{name} v{champion}", "kept", decision.reasons, {"window": window.isoformat()},
               actor=actor, settings=settings)
    target = lake.root / "reports" / "monitor" / f"dt={window.isoformat()}"
    target.mkdir(parents=True, exist_ok=True)
    (target / "rollback.json").write_text(json.dumps(out, indent=1, default=str))
    return out
