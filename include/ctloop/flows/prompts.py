"""An LLM app's prompt versions through the same loop as a model's versions: register, evaluate, gate,
promote or refuse, roll back, each decision audited under the app's name.

A new prompt version is a challenger: the evaluation suites (:mod:`ctloop.evaluation.llm_suites`) run on
it and on the champion version with the same cases, provider and tools; the gate
(:func:`ctloop.decisions.gate.decide`) judges the metrics and the suites; a pass moves
``prompts:/<name>@champion`` by compare-and-set (the old champion stays ``@previous``), a rejection leaves
every alias where it was. The decision is stored whole on the challenger's evaluation run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.core.audit import record as audit_record
from ctloop.core.errors import ConfigError, DataUnreadable, RegistryError
from ctloop.decisions.gate import GateDecision, decide
from ctloop.evaluation.llm_suites import LlmEvaluation, build_cases, evaluate_app
from ctloop.flows.prompt_rollout import start_prompt_rollout
from ctloop.llm.model import log_app_model
from ctloop.llm.providers import ChatProvider, provider_from_spec
from ctloop.llm.triage import Customers, EscalationScorer, KnowledgeBase, ServedEscalation, TriageApp
from ctloop.registry import prompts
from ctloop.registry.mlflow_registry import CHAMPION, GATE_ARTIFACT, configure_mlflow, ensure_experiment

if TYPE_CHECKING:
    from ctloop.core.apps import LlmAppSpec
    from ctloop.core.settings import Settings


@dataclass(frozen=True)
class PromptRelease:
    app: str
    version: str
    champion: str | None
    decision: GateDecision
    challenger: LlmEvaluation
    champion_evaluation: LlmEvaluation | None
    moves: tuple[dict[str, Any], ...]
    rollout: dict[str, Any] | None = None  # the staged rollout it started (promotion.mode: rollout)
    model_version: str | None = None  # <app>_app: the app with this prompt version pinned (a passing gate)

    def to_dict(self) -> dict[str, Any]:
        return {"app": self.app, "version": self.version, "champion": self.champion,
                "promoted": bool(self.moves), "decision": self.decision.to_dict(),
                "metrics": {"challenger": self.challenger.metrics,
                            "champion": self.champion_evaluation.metrics if self.champion_evaluation else None},
                "runs": {"challenger": self.challenger.run_id,
                         "champion": self.champion_evaluation.run_id if self.champion_evaluation else None},
                "moves": list(self.moves), "rollout": self.rollout, "model_version": self.model_version}


def _app_settings(settings: Settings, spec: LlmAppSpec) -> Settings:
    """The settings whose audit entries name the app."""
    return settings.model_copy(update={"model": spec.name})


def register_version(settings: Settings, spec: LlmAppSpec, template_file: Path | None, message: str) -> prompts.PromptVersion:
    """A new version of the app's prompt from a file (default: the spec's ``prompt.template_file``)."""
    configure_mlflow(settings)
    path = template_file or (settings.project_dir / spec.prompt.template_file if spec.prompt.template_file else None)
    if path is None:
        raise ConfigError(f"apps/{spec.name}.yaml: prompt.template_file is not set: give the template file")
    try:
        template = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataUnreadable(f"{path}: the prompt template cannot be read ({e.strerror})") from e
    if "{{ticket}}" not in template.replace(" ", ""):
        raise DataUnreadable(f"{path}: the template has no {{{{ticket}}}} variable (the app fills ticket, route, "
                             f"escalate, customer, article)")
    version = prompts.register(spec.prompt_name, template, message, {"ctloop.app": spec.name})
    audit_record("registration", version.uri, "registered", [message],
                 {"template_file": str(path)}, settings=_app_settings(settings, spec))
    return version


def build_app(settings: Settings, spec: LlmAppSpec, version: str, provider: ChatProvider | None = None,
              escalation: EscalationScorer | None = None) -> TriageApp:
    """The app with one prompt version and the spec's provider and tools (``provider``/``escalation``:
    another implementation of the same interface)."""
    prompt = prompts.load(spec.prompt_name, version)
    if escalation is None:
        url = spec.tools.escalation.url or os.environ.get("CTLOOP_SERVE_URL")
        if not url:
            raise ConfigError(f"apps/{spec.name}.yaml: tools.escalation.url: not set (or set CTLOOP_SERVE_URL to "
                              f"`ctloop serve`'s address)")
        token = settings.serving_token.get_secret_value() if settings.serving_token else None
        escalation = ServedEscalation(spec.tools.escalation, url, token)
    return TriageApp(spec, prompt.template, prompt.version, provider or provider_from_spec(spec.provider),
                     KnowledgeBase.read(spec.knowledge_base_path(settings.project_dir)),
                     Customers.read(spec.customers_path(settings)), escalation)


def evaluate_version(settings: Settings, spec: LlmAppSpec, version: str, provider: ChatProvider | None = None,
                     escalation: EscalationScorer | None = None) -> LlmEvaluation:
    """Every suite on one prompt version, in a run of the app's experiment ``ctloop-<app>``."""
    import mlflow

    client = configure_mlflow(settings)
    mlflow.set_experiment(experiment_id=ensure_experiment(client, f"ctloop-{spec.name}", settings))
    app = build_app(settings, spec, version, provider, escalation)
    cases = build_cases(spec, settings.project_dir)
    return evaluate_app(app, spec, cases, run_name=f"{spec.prompt_name}-v{app.prompt_version}")


def release_version(settings: Settings, spec: LlmAppSpec, version: str, provider: ChatProvider | None = None,
                    escalation: EscalationScorer | None = None, actor: str = "ctloop") -> PromptRelease:
    """Evaluate ``version`` against the champion and gate it; audited either way. A pass promotes the first
    version (judged on the floors) at once; a later one starts its staged rollout as ``@candidate``
    (``promotion.mode: rollout``) or replaces the champion (``auto``)."""
    import mlflow

    client = configure_mlflow(settings)
    name = spec.prompt_name
    resolved = prompts.load(name, version).version
    champion = prompts.alias_version(name, CHAMPION)
    if champion == resolved:
        raise RegistryError(f"prompts:/{name}/{resolved} is already the champion")
    running = prompts.read_rollout(settings, spec.name)
    if running and running.get("status") in ("running", "paused"):  # refused before minutes of evaluation
        raise RegistryError(f"prompts:/{name}: v{running['version']}'s rollout is {running['status']}: finish or "
                            f"abort it first (ctloop prompt rollout advance|abort)")
    provider = provider or provider_from_spec(spec.provider)
    challenger = evaluate_version(settings, spec, resolved, provider, escalation)
    base = evaluate_version(settings, spec, champion, provider, escalation) if champion else None
    decision = decide(challenger.model_evaluation(), base.model_evaluation() if base else None, spec.gate,
                      challenger.suites)
    client.log_dict(challenger.run_id, decision.to_dict(), GATE_ARTIFACT)
    mlflow.genai.set_prompt_version_tag(name, resolved, "ctloop.gate", "passed" if decision.passed else "rejected")
    app_settings = _app_settings(settings, spec)
    subject = f"prompts:/{name}/{resolved}"
    details = {"champion": champion, "run_id": challenger.run_id,
               "metrics": {k: round(v, 6) for k, v in challenger.metrics.items() if v == v}}
    audit_record("gate", subject, "passed" if decision.passed else "rejected", decision.reasons, details,
                 actor=actor, settings=app_settings)
    moves: list[dict[str, Any]] = []
    rollout = None
    model_version = None
    if decision.passed:  # the version that may serve, as an MLflow model with its prompt version pinned
        model_version = log_app_model(settings, spec, resolved, prompts.load(name, resolved).template,
                                      challenger.run_id)
    if decision.passed and champion is not None and spec.promotion.mode == "rollout":
        rollout = start_prompt_rollout(settings, spec, resolved, champion, f"gate passed against v{champion}", actor)
    elif decision.passed:
        reason = f"gate passed against v{champion}" if champion else "first version: gate passed on its floors"
        moves = prompts.promote(settings, name, resolved, champion, reason, actor)
        audit_record("promotion", subject, "promoted", [reason], {"moves": moves}, actor=actor,
                     settings=app_settings)
    return PromptRelease(spec.name, resolved, champion, decision, challenger, base, tuple(moves), rollout,
                         model_version)


def rollback_prompt(settings: Settings, spec: LlmAppSpec, reason: str, actor: str = "ctloop") -> list[dict[str, Any]]:
    configure_mlflow(settings)
    moves = prompts.rollback(settings, spec.prompt_name, reason, actor)
    audit_record("rollback", f"prompts:/{spec.prompt_name}", "rolled back", [reason], {"moves": moves}, actor=actor,
                 settings=_app_settings(settings, spec))
    return moves
