"""A gated prompt version earns its traffic step by step, as a model version does (:mod:`ctloop.flows.rollout`):
``@candidate`` answers ``weight`` of the ticket keys on `ctloop serve`'s ``/apps/<name>/answer``; each
measurement reads the app's request log since the step began (both routes over the same period), and the
same pure analysis (:func:`ctloop.decisions.rollout.judge_step`) says wait, next, promote, abort or pause.
The LLM app's metrics: errors and answers off the schema, p99 latency, tokens per request, refusals.

The state is one JSON file that the server reads for the weight; every outcome is audited under the app.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ctloop.core.audit import record as audit_record
from ctloop.core.errors import RegistryError
from ctloop.data.llm_log import llm_log_since
from ctloop.decisions.rollout import RouteStats, StepAnalysis, StepEvidence, judge_step
from ctloop.registry import prompts
from ctloop.registry.mlflow_registry import CANDIDATE, configure_mlflow

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.core.apps import LlmAppSpec
    from ctloop.core.settings import Settings


def _now() -> datetime:
    return datetime.now(UTC)


def _audit(settings: Settings, spec: LlmAppSpec, state: dict[str, Any], outcome: str, reasons: list[str] | tuple[str, ...],
           actor: str, details: dict[str, Any] | None = None) -> None:
    audit_record("rollout", f"prompts:/{spec.prompt_name}/{state['version']}", outcome, list(reasons),
                 {"step": state["step"], "weight": state["weight"], "champion": state["champion"], **(details or {})},
                 actor=actor, settings=settings.model_copy(update={"model": spec.name}))


def start_prompt_rollout(settings: Settings, spec: LlmAppSpec, version: str, champion: str, reason: str,
                         actor: str = "ctloop", at: datetime | None = None) -> dict[str, Any]:
    """``version`` becomes ``@candidate`` at the first step's weight."""
    at = at or _now()
    current = prompts.read_rollout(settings, spec.name)
    if current and current.get("status") in ("running", "paused"):
        raise RegistryError(f"prompts:/{spec.prompt_name}: v{current['version']}'s rollout is {current['status']}: "
                            f"finish or abort it first")
    prompts.set_alias(spec.prompt_name, CANDIDATE, version)
    first = spec.promotion.rollout.steps[0]
    state = {"app": spec.name, "version": version, "champion": champion, "step": 0, "weight": first.weight,
             "status": "running", "started_at": at.isoformat(), "step_started_at": at.isoformat(),
             "measurements": [], "history": []}
    prompts.write_rollout(settings, spec.name, state)
    _audit(settings, spec, state, "started", [reason], actor)
    return state


def _route_stats(part: pd.DataFrame) -> RouteStats:
    if part.empty:
        return RouteStats(0)
    errors = int((part["error"].notna() | (part["schema_valid"] != True)).sum())  # noqa: E712 (None too)
    latency = part["latency_ms"].dropna()
    return RouteStats(len(part), errors, float(latency.quantile(0.99)) if len(latency) else None)


def measure(settings: Settings, spec: LlmAppSpec, state: dict[str, Any], at: datetime) -> StepEvidence:
    since = datetime.fromisoformat(state["step_started_at"])
    log = llm_log_since(settings.lake_root, spec.name, since)
    champion = log[log["route"] == "champion"]
    candidate = log[(log["route"] == "candidate") & (log["prompt_version"] == state["version"])]

    def mean_tokens(part: pd.DataFrame) -> float | None:
        total = (part["input_tokens"].fillna(0) + part["output_tokens"].fillna(0))
        return float(total.mean()) if len(part) else None

    def refusals(part: pd.DataFrame) -> float | None:
        return float((part["refused"] == True).mean()) if len(part) else None  # noqa: E712

    ct, kt = mean_tokens(champion), mean_tokens(candidate)
    cr, kr = refusals(champion), refusals(candidate)
    return StepEvidence((at - since).total_seconds(), _route_stats(champion), _route_stats(candidate),
                        tokens_ratio=kt / ct if ct and kt is not None else None,
                        refusal_rate_increase=kr - cr if kr is not None and cr is not None else None)


def advance_prompt_rollout(settings: Settings, spec: LlmAppSpec, actor: str = "ctloop",
                           at: datetime | None = None) -> tuple[StepAnalysis, dict[str, Any]]:
    """One measurement of the running step, judged; the action taken at once and audited."""
    at = at or _now()
    state = prompts.read_rollout(settings, spec.name)
    if not state or state.get("status") != "running":
        raise RegistryError(f"prompts:/{spec.prompt_name}: no rollout is running")
    evidence = measure(settings, spec, state, at)
    measured = [_evidence(m) for m in state["measurements"]] + [evidence]
    analysis = judge_step(state["step"], measured, spec.promotion.rollout)
    state["measurements"].append(asdict(evidence))
    if analysis.action == "next":
        state["history"].append({"step": state["step"], "weight": state["weight"], "outcome": analysis.outcome,
                                 "reasons": list(analysis.reasons), "measurements": len(measured), "at": at.isoformat()})
        _audit(settings, spec, state, "step passed", analysis.reasons, actor,
               {"candidate_requests": evidence.candidate.requests})
        state.update(step=state["step"] + 1, weight=analysis.next_weight, step_started_at=at.isoformat(),
                     measurements=[])
    elif analysis.action == "promote":
        configure_mlflow(settings)
        moves = prompts.promote(settings, spec.prompt_name, state["version"], state["champion"],
                                f"rollout: every step passed ({'; '.join(analysis.reasons)})", actor)
        state.update(status="promoted", weight=1.0)
        _audit(settings, spec, state, "promoted", analysis.reasons, actor, {"moves": moves})
    elif analysis.action == "abort":
        prompts.delete_alias(spec.prompt_name, CANDIDATE)
        state.update(status="aborted", weight=0.0)
        _audit(settings, spec, state, "aborted", analysis.reasons, actor)
    elif analysis.action == "pause":
        state.update(status="paused")
        _audit(settings, spec, state, "paused", analysis.reasons, actor)
    prompts.write_rollout(settings, spec.name, state)
    return analysis, state


def abort_prompt_rollout(settings: Settings, spec: LlmAppSpec, reason: str, actor: str) -> dict[str, Any]:
    state = prompts.read_rollout(settings, spec.name)
    if not state or state.get("status") not in ("running", "paused"):
        raise RegistryError(f"prompts:/{spec.prompt_name}: no rollout to abort")
    prompts.delete_alias(spec.prompt_name, CANDIDATE)
    state.update(status="aborted", weight=0.0)
    prompts.write_rollout(settings, spec.name, state)
    _audit(settings, spec, state, "aborted", [reason], actor)
    return state


def _evidence(d: dict[str, Any]) -> StepEvidence:
    return StepEvidence(**{**d, "champion": RouteStats(**d["champion"]), "candidate": RouteStats(**d["candidate"])})
