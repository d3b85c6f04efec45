"""Every move of the registry's aliases, in one place: promote a gated challenger (or force it, said so),
hold it as ``@candidate`` for approval, approve, roll back by hand, and roll back by itself while a new
champion bakes. Each flow reads the decision it acts on, moves the aliases by compare-and-set under the
registry lock (:mod:`ctloop.registry.mlflow_registry`), and audits the outcome, refusals included.
"""

from __future__ import annotations

import json
from datetime import date
from typing import TYPE_CHECKING, Any

from ctloop.core.audit import record as audit_record
from ctloop.core.errors import GateRejected, PromotionConflict, RegistryError
from ctloop.decisions.rollback import decide_rollback
from ctloop.monitoring.quality import LOOKBACK_DAYS
from ctloop.registry.mlflow_registry import (
    CHAMPION,
    TAG,
    alias_version,
    configure_mlflow,
    gate_decision_of,
    hold,
    model_version,
    promote,
    recover,
    rollback,
)

if TYPE_CHECKING:
    from ctloop.core.params import Params
    from ctloop.core.settings import Settings
    from ctloop.data.store import Lake


def promote_version(params: Params, settings: Settings, version: str, reason: str, force: bool = False,
                    actor: str = "ctloop", expected_champion: str | None = None, kind: str = "promotion",
                    dag_run: str | None = None) -> dict[str, Any]:
    """Promote only with a passing gate decision recorded on the version (``force`` overrides and says so).
    The outcome, a promotion or a refusal, goes to the audit log either way (``kind`` "approval" for a
    human approving a candidate)."""
    subject = f"{params.training.registered_model} v{version}"
    recover(configure_mlflow(settings), settings, params.training.registered_model)
    try:
        promotion = _promote_version(params, settings, version, reason, force, actor, expected_champion, dag_run)
    except (GateRejected, PromotionConflict, RegistryError) as e:
        audit_record(kind, subject, "refused", [str(e)], {"requested_reason": reason, "force": force},
                     actor=actor, settings=settings)
        raise
    outcome = "forced" if force else ("approved" if kind == "approval" else "promoted")
    audit_record(kind, subject, outcome, [promotion["reason"]],
                 {"previous_champion": promotion["previous_champion"], "at": promotion["at"]}, actor=actor,
                 settings=settings)
    return promotion


def hold_candidate(params: Params, settings: Settings, version: str, reason: str, actor: str = "ctloop",
                   dag_run: str | None = None) -> dict[str, Any]:
    """``promotion.mode: manual``: a passing challenger becomes ``@candidate`` and waits for approval."""
    client = configure_mlflow(settings)
    name = params.training.registered_model
    recover(client, settings, name)
    held = hold(client, settings, name, version, reason, actor, dag_run)
    audit_record("promotion", f"{name} v{version}", "awaiting approval", [reason, "promotion.mode: manual"],
                 {"replaced_candidate": held["replaced_candidate"]}, actor=actor, settings=settings)
    return held


def rollback_version(params: Params, settings: Settings, to: str | None, reason: str, actor: str = "ctloop",
                     expected_champion: str | None = None, dag_run: str | None = None) -> dict[str, Any]:
    """Move ``champion`` back (default: to ``previous``) in one compare-and-set step; audited either way."""
    from ctloop.core.errors import ConfigError

    name = params.training.registered_model
    if not reason.strip():
        raise ConfigError("a rollback needs a reason")
    client = configure_mlflow(settings)
    try:
        done = rollback(client, settings, name, to, expected_champion, reason, actor, dag_run)
    except (PromotionConflict, RegistryError) as e:
        audit_record("rollback", f"{name} -> v{to or 'previous'}", "refused", [str(e)], actor=actor,
                     settings=settings)
        raise
    audit_record("rollback", f"{name} v{done.previous_champion} -> v{done.version}", "rolled back", [reason],
                 {"at": done.at}, actor=actor, settings=settings)
    return done.to_dict() | {"rolled_back": done.previous_champion}


def _promote_version(params: Params, settings: Settings, version: str, reason: str, force: bool,
                     actor: str, expected_champion: str | None, dag_run: str | None) -> dict[str, Any]:
    client = configure_mlflow(settings)
    name = params.training.registered_model
    tags = model_version(client, name, version).tags
    decision = gate_decision_of(client, name, version)
    if decision is None and not force:
        raise GateRejected(f"{name} v{version} has no gate decision; run `ctloop gate` first (or --force)")
    if decision is not None and not decision["passed"] and not force:
        raise GateRejected(f"{name} v{version} failed its gate: {'; '.join(decision['reasons'])}")
    if force:
        verdict = "passed" if decision and decision["passed"] else "FAILED"
        reason = f"FORCED: {reason} (gate {verdict}: {'; '.join(decision['reasons']) if decision else 'none'})"
    if expected_champion is None:
        # a gated promotion is only valid against the champion the gate judged against (compare-and-set);
        # a forced one is a human override of the champion as it is now
        current = alias_version(client, name, CHAMPION)
        if current == version:
            raise PromotionConflict(f"{name}: v{version} is already the champion")
        expected_champion = current if force or decision is None else decision.get("champion")
        if expected_champion != current:
            raise PromotionConflict(
                f"{name} v{version}: the gate judged it against champion v{expected_champion}, but the champion "
                f"is now v{current}; re-run `ctloop evaluate` and `ctloop gate` (or --force)")
    if tags.get(f"{TAG}rolled_back_at") and (decision is None or not decision["passed"]) and not force:
        raise GateRejected(f"{name} v{version} was rolled back; it needs a new gate pass first")
    promotion = promote(client, settings, name, version, expected_champion, reason, actor, dag_run)
    if force:
        client.set_model_version_tag(name, version, f"{TAG}force_promoted", "true")
    return promotion.to_dict()


def monitor_summaries(lake: Lake, before: date, days: int) -> list[dict[str, Any]]:
    """The monitor's window summaries of the ``days`` before ``before``, oldest first."""
    from datetime import timedelta

    out = []
    for back in range(days, 0, -1):
        summary = lake.root / "reports" / "monitor" / f"dt={(before - timedelta(days=back)).isoformat()}" / "summary.json"
        if summary.exists():
            out.append(json.loads(summary.read_text()))
    return out


def replay_quality(lake: Lake, params: Params, settings: Settings, window: date, judged: date, champion: str,
                   previous: str) -> float | None:
    """``previous``'s quality on the labeled requests the champion served on ``judged`` (same rows, same
    labels, same metric), or None when they cannot be replayed."""
    import mlflow

    from ctloop.estimators.scoring import ScoringError, score_rows
    from ctloop.monitoring.quality import quality_of, served_and_labeled, window_labels
    from ctloop.monitoring.reference import SCORE
    from ctloop.registry.mlflow_registry import configure_mlflow

    joined = served_and_labeled(lake, params, judged, champion, window_labels(lake, window))
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
    if params.dataset.task == "regression":
        return quality_of(params.monitoring.quality_metric, replayed, "regression")
    if params.dataset.task == "multiclass":
        import numpy as np

        classes = np.asarray(params.dataset.classes)
        best = [classes[int(np.argmax(p))] for p in replayed[SCORE]]
        return quality_of(params.monitoring.quality_metric, replayed.assign(prediction=best), "multiclass")
    replayed = replayed.assign(prediction=(replayed[SCORE] >= threshold).astype("int64"))
    return quality_of(params.monitoring.quality_metric, replayed)


def guard_champion(lake: Lake, params: Params, settings: Settings, window: date, quality: dict[str, Any],
                   actor: str = "ctloop_monitor") -> dict[str, Any]:
    """Decide, and roll back when the decision says so. Returns the decision (and the rollback)."""
    from ctloop.core.audit import record
    from ctloop.registry.mlflow_registry import CHAMPION, PREVIOUS, alias_version, configure_mlflow

    client = configure_mlflow(settings)
    name = params.training.registered_model
    recover(client, settings, name)
    champion = alias_version(client, name, CHAMPION)
    if champion is None:
        return {"decision": None}
    previous = alias_version(client, name, PREVIOUS)
    policy = params.promotion.rollback
    # enough history to find when this champion started and what the previous one had: bounded by the
    # policy, not by how long the deployment has run
    summaries = monitor_summaries(lake, window, policy.bake_days + policy.comparable_windows + 2 * LOOKBACK_DAYS)
    served = [date.fromisoformat(s["window"]) for s in summaries if str(s.get("champion")) == champion]
    if quality.get("quality_window"):  # labeled quality only counts requests this champion served
        served.append(date.fromisoformat(str(quality["quality_window"])))
    first_served = min(served) if served else window
    history = [(date.fromisoformat(s["quality_window"]), float(s["quality"])) for s in summaries
               if str(s.get("champion")) == previous and s.get("quality") is not None and s.get("quality_window")]
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
