"""``ctloop prompt`` verbs: an LLM app's prompt versions in MLflow's Prompt Registry: register, alias, diff,
evaluate, release (gate, then promote), roll back, status."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ctloop.cli.app import JsonFlag, app, emit
from ctloop.core.errors import ConfigError, GateRejected

if TYPE_CHECKING:
    from ctloop.core.apps import LlmAppSpec
    from ctloop.core.settings import Settings

prompt_app = typer.Typer(no_args_is_help=True, help="An LLM app's prompt versions: registered, gated, promoted.")
app.add_typer(prompt_app, name="prompt")

AppOption = Annotated[str | None, typer.Option("--app", help="the LLM app (apps/NAME.yaml); default: the only one")]
ProviderOption = Annotated[str | None, typer.Option(
    "--provider-factory", metavar="MODULE:FUNCTION",
    help="another provider behind the same interface (default: the spec's provider)")]
EscalationOption = Annotated[str | None, typer.Option(
    "--escalation-factory", metavar="MODULE:FUNCTION",
    help="another escalation scorer (default: the classifier at tools.escalation.url or CTLOOP_SERVE_URL)")]


def _context(name: str | None) -> tuple[Settings, LlmAppSpec]:
    from ctloop.core.apps import get_app
    from ctloop.core.settings import get_settings

    settings = get_settings()
    return settings, get_app(settings, name)


def _factory(value: str | None, option: str, spec: LlmAppSpec) -> Any:
    if value is None:
        return None
    module, _, attr = value.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)(spec)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(f"{option} {value!r}: cannot be imported ({e})") from e


@prompt_app.command("register")
def register(
    template: Annotated[Path | None, typer.Argument(help="the template file (MLflow's {{variable}} syntax); "
                                                         "default: the spec's prompt.template_file")] = None,
    message: Annotated[str, typer.Option("--message", "-M", help="what changed (the version's commit message)")] = "",
    name: AppOption = None,
    as_json: JsonFlag = False,
) -> None:
    """A new immutable version of the app's prompt. It serves nothing until `ctloop prompt release` gates it."""
    from ctloop.flows.prompts import register_version

    settings, spec = _context(name)
    v = register_version(settings, spec, template, message or f"registered from {template or 'the spec'}")
    emit({"name": v.name, "version": v.version, "uri": v.uri}, as_json, f"registered {v.uri}")


@prompt_app.command("alias")
def alias(
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. candidate (champion moves only through "
                                                                     "release and rollback)")],
    version: Annotated[str, typer.Argument(help="the prompt version")],
    name: AppOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Point an alias other than champion/previous at a version (the gate guards champion)."""
    from ctloop.core.errors import UsageError
    from ctloop.registry import prompts
    from ctloop.registry.mlflow_registry import CHAMPION, PREVIOUS, configure_mlflow

    settings, spec = _context(name)
    if alias_name in (CHAMPION, PREVIOUS):
        raise UsageError(f"ALIAS {alias_name!r}: moves only through `ctloop prompt release` (gated) and "
                         f"`ctloop prompt rollback`")
    configure_mlflow(settings)
    prompts.set_alias(spec.prompt_name, alias_name, version)
    emit({"name": spec.prompt_name, "alias": alias_name, "version": version}, as_json,
         f"prompts:/{spec.prompt_name}@{alias_name} -> v{version}")


@prompt_app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(help="a version or alias")],
    b: Annotated[str, typer.Argument(help="a version or alias")],
    name: AppOption = None,
    as_json: JsonFlag = False,
) -> None:
    """A unified diff of two prompt versions' templates."""
    from ctloop.registry import prompts
    from ctloop.registry.mlflow_registry import configure_mlflow

    settings, spec = _context(name)
    configure_mlflow(settings)
    text = prompts.diff(spec.prompt_name, a, b)
    emit({"name": spec.prompt_name, "a": a, "b": b, "diff": text}, as_json, text or "(no difference)")


@prompt_app.command("evaluate")
def evaluate(
    version: Annotated[str, typer.Argument(help="a version or alias")],
    name: AppOption = None,
    provider: ProviderOption = None,
    escalation: EscalationOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Run every evaluation suite on one version (mlflow.genai.evaluate, code scorers); nothing moves."""
    from ctloop.flows.prompts import evaluate_version

    settings, spec = _context(name)
    result = evaluate_version(settings, spec, version, _factory(provider, "--provider-factory", spec),
                              _factory(escalation, "--escalation-factory", spec))
    lines = [f"{k}: {v:.4g}" for k, v in result.metrics.items()]
    lines += [s["summary"] for s in result.suites]
    emit({"version": result.version, "run_id": result.run_id, "metrics": result.metrics, "suites": result.suites},
         as_json, "\n".join(lines))


@prompt_app.command("release")
def release(
    version: Annotated[str, typer.Argument(help="the challenger version (or alias)")],
    name: AppOption = None,
    provider: ProviderOption = None,
    escalation: EscalationOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Evaluate VERSION and the champion, gate, and promote on a pass. Exit 1 when the gate rejects it."""
    from ctloop.flows.prompts import release_version

    settings, spec = _context(name)
    r = release_version(settings, spec, version, _factory(provider, "--provider-factory", spec),
                        _factory(escalation, "--escalation-factory", spec), actor="cli")
    out = r.to_dict()
    head = (f"promoted prompts:/{spec.prompt_name}/{r.version} (was {'v' + r.champion if r.champion else 'none'})"
            if r.moves else f"gate passed: prompts:/{spec.prompt_name}/{r.version} is @candidate at "
                            f"{r.rollout['weight']:.0%} of `ctloop serve`'s tickets (ctloop prompt rollout advance)"
            if r.rollout else f"rejected prompts:/{spec.prompt_name}/{r.version}; champion stays "
                            f"{'v' + r.champion if r.champion else 'unset'}")
    emit(out, as_json, "\n".join([head, *("  " + reason for reason in r.decision.reasons)]))
    if not r.decision.passed:
        raise GateRejected(f"prompts:/{spec.prompt_name}/{r.version}: {r.decision.reasons[0]}")


@prompt_app.command("rollback")
def rollback(
    reason: Annotated[str, typer.Option(help="why (audited)")],
    name: AppOption = None,
    as_json: JsonFlag = False,
) -> None:
    """champion back to previous, at once."""
    from ctloop.flows.prompts import rollback_prompt

    settings, spec = _context(name)
    moves = rollback_prompt(settings, spec, reason, actor="cli")
    emit({"moves": moves}, as_json, f"champion: v{moves[0]['to']} (was v{moves[0]['from']})")


@prompt_app.command("status")
def status(name: AppOption = None, as_json: JsonFlag = False) -> None:
    """Which version each alias points at, and the alias history."""
    from ctloop.registry import prompts
    from ctloop.registry.mlflow_registry import CANDIDATE, CHAMPION, PREVIOUS, configure_mlflow, read_history

    settings, spec = _context(name)
    configure_mlflow(settings)
    aliases = {a: prompts.alias_version(spec.prompt_name, a) for a in (CHAMPION, PREVIOUS, CANDIDATE)}
    history = read_history(settings, f"prompt-{spec.prompt_name}")
    emit({"app": spec.name, "prompt": spec.prompt_name, "aliases": aliases, "history": history}, as_json,
         "\n".join(f"{a}: {'v' + v if v else '-'}" for a, v in aliases.items()))


prompt_rollout_app = typer.Typer(no_args_is_help=True, help="A gated prompt version's staged rollout on `ctloop serve`.")
prompt_app.add_typer(prompt_rollout_app, name="rollout")


@prompt_rollout_app.command("status")
def rollout_status(name: AppOption = None, as_json: JsonFlag = False) -> None:
    """The rollout's version, step, weight and status."""
    from ctloop.registry import prompts

    settings, spec = _context(name)
    state = prompts.read_rollout(settings, spec.name) or {}
    emit(state, as_json, f"v{state['version']}: step {state['step'] + 1}, weight {state['weight']:.0%}, "
                         f"{state['status']}" if state else "no rollout")


@prompt_rollout_app.command("advance")
def rollout_advance(name: AppOption = None, as_json: JsonFlag = False) -> None:
    """Measure the running step from the request log, judge it, and act (next weight, promote, abort, pause)."""
    from ctloop.flows.prompt_rollout import advance_prompt_rollout

    settings, spec = _context(name)
    analysis, state = advance_prompt_rollout(settings, spec, actor="cli")
    emit({"analysis": analysis.to_dict(), "state": state}, as_json,
         "\n".join([f"step {analysis.step + 1} ({analysis.weight:.0%}): {analysis.outcome} -> {analysis.action}",
                    *("  " + r for r in analysis.reasons)]))


@prompt_rollout_app.command("abort")
def rollout_abort(reason: Annotated[str, typer.Option(help="why (audited)")], name: AppOption = None,
                  as_json: JsonFlag = False) -> None:
    """Weight 0 at once; the candidate alias is removed; the champion never moved."""
    from ctloop.flows.prompt_rollout import abort_prompt_rollout

    settings, spec = _context(name)
    state = abort_prompt_rollout(settings, spec, reason, actor="cli")
    emit(state, as_json, f"aborted v{state['version']}")


@prompt_app.command("monitor")
def monitor(
    day: Annotated[str, typer.Option("--date", help="the window: requests logged that day (UTC), YYYY-MM-DD")],
    name: AppOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Tokens, cost, schema failures, refusals and tool latency per prompt version for one day, and the drift
    of the tickets' text; logged to MLflow and Grafana. Exit 1 when the window is beyond its limits."""
    from ctloop.cli.app import parse_day
    from ctloop.core.errors import LimitsExceeded
    from ctloop.flows.prompt_monitor import monitor_app

    settings, spec = _context(name)
    window = monitor_app(settings, spec, parse_day(day, "--date"))
    lines = [f"{window.app} {window.day}: {window.rows} requests, {window.decision.tokens} tokens, "
             f"cost {window.decision.cost:.4f}"]
    lines += [f"  v{s.version}: {s.requests} requests, {s.tokens_per_request:.0f} tokens/request, cost {s.cost:.4f}, "
              f"schema failures {s.schema_failure_rate:.1%}, refusals {s.refusal_rate:.1%}" for s in window.versions]
    lines += [f"  ! {r}" for r in window.decision.reasons]
    emit(window.to_dict(), as_json, "\n".join(lines))
    if window.decision.alert:
        raise LimitsExceeded(f"{window.app} {window.day}: {window.decision.reasons[0]}")
