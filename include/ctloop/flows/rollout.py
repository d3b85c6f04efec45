"""Staged rollout, the acting side: a gated challenger becomes ``@candidate`` and earns its traffic step by
step (``promotion.rollout.steps``), each step judged by :func:`ctloop.decisions.rollout.judge_step` on
evidence measured from the prediction log (:func:`ctloop.monitoring.rollout.measure_step`).

The rollout's state is one file per model (``<state_dir>/rollout.json``, beside the serving routes), so the
``<model>__rollout`` DAG, ``ctloop rollout`` and every server agree on it. Each flow reads the state, acts
(weight in the routes file, aliases by compare-and-set in the registry), writes the state and audits
(kind ``rollout``), in that order; the candidate's weight goes to 0 *before* anything else on an abort.

* :func:`start_rollout`: the gate passed; ``@candidate`` = the version, weight = the first step.
* :func:`advance_rollout`: measure, judge, act: wait, next weight, promote (``@champion`` moves in one
  compare-and-set step; the old champion becomes ``@previous``), abort (weight 0, the candidate withdrawn
  and tagged with the reasons), or pause (Inconclusive: a person decides).
* :func:`resume_rollout`, :func:`abort_rollout`: the person's two answers (CLI or the DAG's Params form).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ctloop.core.audit import record as audit_record
from ctloop.core.errors import ConfigError, GateRejected, PromotionConflict
from ctloop.decisions.rollout import StepAnalysis, judge_step
from ctloop.monitoring.records import RouteStats, StepEvidence

if TYPE_CHECKING:
    from ctloop.core.params import Params
    from ctloop.core.settings import Settings

Status = Literal["running", "paused", "promoted", "aborted"]
ACTIVE: tuple[str, ...] = ("running", "paused")
MAX_MEASUREMENTS = 100  # per step, in the state file (the failure limit counts them)


@dataclass(frozen=True)
class RolloutState:
    model: str  # the registered model
    candidate: str
    champion: str | None  # the champion the gate judged against: the promotion's compare-and-set
    status: Status
    step: int
    weight: float
    started_at: str
    step_started_at: str
    reason: str
    actor: str
    measurements: tuple[StepEvidence, ...] = ()
    steps: tuple[dict[str, Any], ...] = ()  # each finished step's analysis, with its wall time
    ended_at: str | None = None
    ended_reasons: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RolloutState:
        measured = tuple(StepEvidence(**{**m, "champion": RouteStats(**m["champion"]),
                                         "candidate": RouteStats(**m["candidate"])}) for m in raw["measurements"])
        return cls(**{**raw, "measurements": measured, "steps": tuple(raw["steps"]),
                      "ended_reasons": tuple(raw["ended_reasons"])})


@dataclass(frozen=True)
class Advance:
    """One pass of the controller: the state after it and the analysis it acted on (None: nothing to do)."""

    state: RolloutState | None
    analysis: StepAnalysis | None = None
    moved: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state.to_dict() if self.state else None,
                "analysis": self.analysis.to_dict() if self.analysis else None, "moved": self.moved}


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def rollout_path(settings: Settings) -> Path:
    return settings.state_dir / "rollout.json"


def read_rollout(settings: Settings) -> RolloutState | None:
    """The model's rollout, running or ended (None: never started). A broken file is a ConfigError."""
    path = rollout_path(settings)
    if not path.exists():
        return None
    try:
        return RolloutState.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"{path}: not a rollout state file: {e}") from e


def _write(settings: Settings, state: RolloutState) -> RolloutState:
    path = rollout_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state.to_dict(), indent=1, default=str))
    tmp.replace(path)
    return state


def _set_weight(params: Params, settings: Settings, weight: float, by: str) -> None:
    from ctloop.data.routes import read_routes, write_routes

    routes = read_routes(settings.state_dir, params.serving)
    write_routes(settings.state_dir, routes.changed(by, canary_alias="candidate", canary_fraction=weight))


STEP_OUTCOMES = {"Successful": 1, "Inconclusive": 0, "Failed": -1}


def _audit(settings: Settings, state: RolloutState, outcome: str, reasons: list[str] | tuple[str, ...],
           actor: str, **details: Any) -> None:
    """The audit entry, and the rollout's gauges (``ctloop.rollout.*`` over StatsD: the candidate's weight,
    the last finished step's outcome (1 Successful, 0 Inconclusive, -1 Failed) and its wall seconds)."""
    from ctloop.core.metrics import emit_gauges

    last = state.steps[-1] if state.steps else None
    emit_gauges("rollout", {"weight": 0.0 if state.status in ("aborted", "promoted") else state.weight,
                            "step": state.step + 1,
                            "step_outcome": STEP_OUTCOMES.get(last["outcome"]) if last else None,
                            "step_seconds": last["wall_seconds"] if last else None},
                {"model": settings.model or state.model, "candidate": state.candidate})
    audit_record("rollout", f"{state.model} v{state.candidate}", outcome, list(reasons),
                 {"step": state.step, "weight": state.weight, "champion": state.champion, **details},
                 actor=actor, settings=settings)


def start_rollout(params: Params, settings: Settings, version: str, reason: str, actor: str = "ctloop",
                  expected_champion: str | None = None, dag_run: str | None = None) -> RolloutState:
    """A gated challenger becomes ``@candidate`` at the first step's weight. A rollout still running for
    another version is aborted first (superseded by the newer gate pass)."""
    from ctloop.registry.mlflow_registry import (
        CHAMPION,
        alias_version,
        configure_mlflow,
        gate_decision_of,
        hold,
        recover,
    )

    client = configure_mlflow(settings)
    name = params.training.registered_model
    recover(client, settings, name)
    decision = gate_decision_of(client, name, version)
    if decision is None or not decision["passed"]:
        raise GateRejected(f"{name} v{version}: a staged rollout needs a passing gate decision on the version")
    champion = alias_version(client, name, CHAMPION)
    if expected_champion is not None and champion != expected_champion:
        raise PromotionConflict(f"{name} v{version}: the gate judged it against champion v{expected_champion}, "
                                f"but the champion is now v{champion}")
    if champion is None or champion == version:
        raise PromotionConflict(f"{name} v{version}: a staged rollout needs another version as @champion "
                                f"(champion: {'none' if champion is None else 'v' + champion})")
    current = read_rollout(settings)
    if current is not None and current.active:
        if current.candidate == version:
            return current
        abort_rollout(params, settings, f"superseded by v{version} ({reason})", actor)
    hold(client, settings, name, version, f"rollout: {reason}", actor, dag_run)
    at = _iso(_now())
    first = params.promotion.rollout.steps[0].weight
    state = RolloutState(name, version, champion, "running", 0, first, at, at, reason, actor)
    _set_weight(params, settings, first, f"rollout of v{version}")
    _write(settings, state)
    _audit(settings, state, "started", [reason, f"step 1 of {len(params.promotion.rollout.steps)}: "
                                                f"{first:.0%} of request keys"], actor)
    return state


def measure(params: Params, settings: Settings, state: RolloutState, at: datetime) -> StepEvidence:
    """The current step's evidence: the log rows both versions served since the step began, the labels
    that arrived for them, and whether the server's guard stopped the candidate."""
    import pandas as pd

    from ctloop.data.predictions import labels_arrived, predictions_written_since
    from ctloop.data.routes import read_routes
    from ctloop.data.store import Lake
    from ctloop.monitoring.rollout import CANDIDATE, CHAMPION, SHADOW, measure_step

    since = datetime.fromisoformat(state.step_started_at)
    lake = Lake(settings.lake_root)
    log = predictions_written_since(lake, since, params.dataset)
    versions = log["model_version"].astype(str)
    candidate = log[(log["route"] == CANDIDATE) & (versions == state.candidate)]
    champion = log[log["route"].isin([CHAMPION, SHADOW]) & versions.isin([state.champion, state.candidate])]
    if state.weight >= 1.0:
        # at 100% the champion serves no key: its side is what it served since the rollout began
        whole = predictions_written_since(lake, datetime.fromisoformat(state.started_at), params.dataset)
        champion = whole[(whole["route"] == CHAMPION) & (whole["model_version"].astype(str) == state.champion)]
    log = pd.concat([candidate, champion], ignore_index=True)
    routes = read_routes(settings.state_dir, params.serving)
    stopped = bool(routes.stopped and str(routes.stopped.get("version")) == state.candidate)
    step = params.promotion.rollout.steps[state.step]
    labels = None
    if "quality_drop" in params.promotion.rollout.analysis and len(log):
        labels = labels_arrived(lake, at.date(), since.date())
    return measure_step(log, (at - since).total_seconds(), labels=labels,
                        quality_metric=params.monitoring.quality_metric, task=params.dataset.task,
                        min_labeled=step.min_labeled, guard_stopped=stopped)


def step_ready(params: Params, settings: Settings, not_before: str, at: datetime | None = None) -> str | None:
    """Why the controller should measure now, or None to keep waiting (what the triggerer polls; cheap: it
    reads the state, the routes and the candidate's log rows' route column only):
    the rollout is no longer running (a person paused or aborted it), the server's guard stopped the
    candidate, the step's timeout passed, or ``not_before`` passed and the step has its minimum time and
    candidate requests."""
    import pyarrow.parquet as pq

    from ctloop.data.predictions import CANARY_ROUTE, prediction_files_since
    from ctloop.data.routes import read_routes
    from ctloop.data.store import Lake

    state = read_rollout(settings)
    if state is None or state.status != "running":
        return f"rollout {'gone' if state is None else state.status}"
    routes = read_routes(settings.state_dir, params.serving)
    if routes.stopped and str(routes.stopped.get("version")) == state.candidate:
        return "the server's guard stopped the candidate"
    at = at or _now()
    started = datetime.fromisoformat(state.step_started_at)
    step = params.promotion.rollout.steps[state.step]
    elapsed = (at - started).total_seconds()
    if elapsed >= step.timeout_seconds:
        return f"step timeout {step.timeout_seconds:.0f} s passed"
    if at < datetime.fromisoformat(not_before) or elapsed < step.min_seconds:
        return None
    requests = 0
    for f in prediction_files_since(Lake(settings.lake_root), started):
        t = pq.read_table(f, columns=["route", "model_version"])
        requests += sum(r == CANARY_ROUTE and str(v) == state.candidate
                        for r, v in zip(t.column("route").to_pylist(), t.column("model_version").to_pylist(),
                                        strict=True))
        if requests >= step.min_requests:
            return f"{requests} candidate requests and {elapsed:.0f} s on the step"
    return None


def _log_step(settings: Settings, params: Params, state: RolloutState, analysis: StepAnalysis) -> None:
    """The step's analysis as an artifact on the candidate's MLflow run, and its outcome as a version tag."""
    from ctloop.registry.mlflow_registry import TAG, configure_mlflow, model_version

    client = configure_mlflow(settings)
    name = params.training.registered_model
    mv = model_version(client, name, state.candidate)
    if mv.run_id:
        client.log_dict(mv.run_id, analysis.to_dict() | {"started_at": state.step_started_at},
                        f"rollout/step-{analysis.step + 1}.json")
    client.set_model_version_tag(name, state.candidate, f"{TAG}rollout_step_{analysis.step + 1}",
                                 f"{analysis.outcome} at {analysis.weight:.0%}")


def candidate_run_url(params: Params, settings: Settings, state: RolloutState) -> str | None:
    """The MLflow UI's page of the candidate's run, where each step's analysis is logged; None when the
    version has no run."""
    from ctloop.registry.mlflow_registry import configure_mlflow, model_version

    client = configure_mlflow(settings)
    mv = model_version(client, params.training.registered_model, state.candidate)
    if not mv.run_id:
        return None
    return settings.mlflow_run_url(client.get_run(mv.run_id).info.experiment_id, mv.run_id)


def advance_rollout(params: Params, settings: Settings, actor: str = "ctloop",
                    at: datetime | None = None) -> Advance:
    """One measurement and the action it calls for. Nothing to do unless a rollout is running."""
    state = read_rollout(settings)
    if state is None or state.status != "running":
        return Advance(state)
    at = at or _now()
    evidence = measure(params, settings, state, at)
    measured = (*state.measurements, evidence)[-MAX_MEASUREMENTS:]
    analysis = judge_step(state.step, measured, params.promotion.rollout)
    if analysis.action == "wait":
        return Advance(_write(settings, replace(state, measurements=measured)), analysis)
    finished = analysis.to_dict() | {"started_at": state.step_started_at, "ended_at": _iso(at),
                                     "wall_seconds": evidence.elapsed_seconds}
    state = replace(state, measurements=measured, steps=(*state.steps, finished))
    if analysis.action == "abort":
        return _abort(params, settings, state, list(analysis.reasons), actor, analysis)
    _log_step(settings, params, state, analysis)
    if analysis.action == "pause":
        state = _write(settings, replace(state, status="paused"))
        _audit(settings, state, "paused", ["Inconclusive", *analysis.reasons], actor)
        return Advance(state, analysis)
    if analysis.action == "next":
        assert analysis.next_weight is not None
        _set_weight(params, settings, analysis.next_weight, f"rollout of v{state.candidate}")
        state = _write(settings, replace(state, step=state.step + 1, weight=analysis.next_weight,
                                         step_started_at=_iso(at), measurements=()))
        _audit(settings, state, "next step", [f"step {analysis.step + 1} Successful", *analysis.reasons], actor,
               previous_weight=analysis.weight)
        return Advance(state, analysis, {"weight": analysis.next_weight})
    return _promote(params, settings, state, analysis, actor, at)


def _promote(params: Params, settings: Settings, state: RolloutState, analysis: StepAnalysis, actor: str,
             at: datetime) -> Advance:
    from ctloop.flows.promotion import promote_version

    reason = (f"staged rollout: {len(state.steps)} steps Successful since {state.started_at} "
              f"({state.reason})")
    try:
        promotion = promote_version(params, settings, state.candidate, reason, actor=actor,
                                    expected_champion=state.champion, dag_run=actor)
    except (GateRejected, PromotionConflict) as e:
        return _abort(params, settings, state, [f"promotion refused: {e}"], actor, analysis)
    _set_weight(params, settings, 0.0, f"rollout of v{state.candidate} promoted")
    state = _write(settings, replace(state, status="promoted", weight=1.0, ended_at=_iso(at),
                                     ended_reasons=(reason,)))
    _audit(settings, state, "promoted", [reason], actor, previous_champion=promotion["previous_champion"])
    return Advance(state, analysis, {"champion": state.candidate, "previous": promotion["previous_champion"]})


def _abort(params: Params, settings: Settings, state: RolloutState, reasons: list[str], actor: str,
           analysis: StepAnalysis | None = None) -> Advance:
    """Weight 0 first (users stop reaching the candidate at the servers' next poll), then the registry."""
    from ctloop.registry.mlflow_registry import configure_mlflow, withdraw

    _set_weight(params, settings, 0.0, f"rollout of v{state.candidate} aborted")
    at = _iso(_now())
    state = _write(settings, replace(state, status="aborted", weight=0.0, ended_at=at, ended_reasons=tuple(reasons)))
    withdraw(configure_mlflow(settings), settings, state.model, state.candidate, "; ".join(reasons),
             {"rollout_aborted_at": at, "rollout_aborted_reasons": "; ".join(reasons)[:4900]}, actor)
    if analysis is not None:
        _log_step(settings, params, state, analysis)
    _audit(settings, state, "aborted", reasons, actor)
    return Advance(state, analysis, {"weight": 0.0})


def resume_rollout(params: Params, settings: Settings, reason: str, actor: str) -> RolloutState:
    """A person lets a paused rollout go on: the step starts again (its clock and its measurements)."""
    state = _require(settings, reason, ("paused",))
    state = _write(settings, replace(state, status="running", step_started_at=_iso(_now()), measurements=()))
    _audit(settings, state, "resumed", [reason], actor)
    return state


def abort_rollout(params: Params, settings: Settings, reason: str, actor: str) -> RolloutState:
    state = _require(settings, reason, ACTIVE)
    done = _abort(params, settings, state, [f"aborted by {actor}: {reason}"], actor)
    assert done.state is not None
    return done.state


def _require(settings: Settings, reason: str, statuses: tuple[str, ...]) -> RolloutState:
    if not reason.strip():
        raise ConfigError("--reason: say why (it goes to the audit log)")
    state = read_rollout(settings)
    if state is None or state.status not in statuses:
        now = "no rollout" if state is None else f"the rollout of v{state.candidate} is {state.status}"
        raise ConfigError(f"{settings.model or 'model'}: {now}; expected one that is {' or '.join(statuses)}")
    return state
