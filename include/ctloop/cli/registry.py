"""``ctloop`` verbs: the registry's aliases: promote, approve, roll back, their history and the status."""

from __future__ import annotations

from typing import Annotated

import typer

from ctloop.cli.app import JsonFlag, app, emit, rollout_app, runtime


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="model version to make champion")],
    reason: Annotated[str, typer.Option(help="why (recorded on the version)")],
    force: Annotated[bool, typer.Option(help="promote even without a passing gate (recorded as forced)")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Move `champion` to VERSION (compare-and-set); the old champion becomes `previous`."""
    from ctloop.flows.promotion import promote_version

    settings, params, _ = runtime()
    result = promote_version(params, settings, version, reason, force=force, actor="cli")
    emit(result, as_json, f"champion: v{result['version']} (was {'v' + result['previous_champion'] if result['previous_champion'] else 'none'})")


@app.command()
def approve(
    version: Annotated[str, typer.Argument(help="the @candidate version")],
    reason: Annotated[str, typer.Option(help="why it may go live (audited)")],
    as_json: JsonFlag = False,
) -> None:
    """promotion.mode manual: promote a gated candidate. Refused (exit 1) when its gate failed."""
    from ctloop.flows.promotion import promote_version

    settings, params, _ = runtime()
    result = promote_version(params, settings, version, f"approved: {reason}", actor="cli", kind="approval")
    emit(result, as_json, f"approved: champion v{result['version']} (was "
                           f"{'v' + result['previous_champion'] if result['previous_champion'] else 'none'})")


@app.command()
def rollback(
    reason: Annotated[str, typer.Option(help="why (audited, recorded on both versions)")],
    to: Annotated[str | None, typer.Option("--to", help="version to restore (default: @previous)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Move `champion` back in one compare-and-set step; the rolled-back version needs a new gate pass."""
    from ctloop.flows.promotion import rollback_version

    settings, params, _ = runtime()
    result = rollback_version(params, settings, to, reason, actor="cli")
    emit(result, as_json, f"rolled back: champion v{result['version']} (was v{result['rolled_back']})")


@app.command()
def history(as_json: JsonFlag = False) -> None:
    """Every alias move, oldest first: kind, alias from -> to, who or what, reason, DAG run, time."""
    from ctloop.registry.mlflow_registry import read_history

    settings, params, _ = runtime()
    entries = read_history(settings, params.training.registered_model)
    if as_json:
        emit({"model": params.training.registered_model, "history": entries}, True, "")
        return
    for e in entries:
        moves = ", ".join(f"@{m['alias']} {('v' + m['from']) if m['from'] else '-'} -> "
                          f"{('v' + m['to']) if m['to'] else '-'}" for m in e["moves"])
        typer.echo(f"{e['at']} {e['kind']:<9} {moves}  by {e['actor']}{' (' + e['dag_run'] + ')' if e['dag_run'] else ''}"
                   f": {e['reason']}")


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Champion, challenger and previous with their metrics and when/why they moved, and a staged rollout
    in progress."""
    from ctloop.flows.rollout import read_rollout
    from ctloop.registry.mlflow_registry import configure_mlflow, registry_status

    settings, params, _ = runtime()
    st = registry_status(configure_mlflow(settings), params.training.registered_model, settings)
    rollout = read_rollout(settings)
    st["rollout"] = rollout.to_dict() if rollout else None
    if as_json:
        emit(st, True, "")
        return
    from rich.console import Console

    from ctloop.views import status_table

    Console(width=None if Console().is_terminal else 150).print(status_table(st))
    if rollout is not None and rollout.active:
        typer.echo(f"rollout in progress: {_rollout_line(st['rollout'])}")


def _rollout_line(state: dict | None) -> str:
    if state is None:
        return "no rollout"
    line = (f"v{state['candidate']} vs champion v{state['champion']}: {state['status']}, step {state['step'] + 1} at "
            f"{state['weight']:.0%} since {state['step_started_at']}")
    from ctloop.views import rollout_step_line

    for i, step in enumerate(state["steps"], 1):
        line += f"\n  {rollout_step_line(i, step)}"
    if state["ended_reasons"]:
        line += f"\n  ended {state['ended_at']}: {'; '.join(state['ended_reasons'])}"
    return line


@rollout_app.command("status")
def rollout_status(as_json: JsonFlag = False) -> None:
    """The model's staged rollout: candidate, step, weight, each finished step's analysis."""
    from ctloop.flows.rollout import read_rollout

    settings, _, _ = runtime()
    state = read_rollout(settings)
    emit({"rollout": state.to_dict() if state else None}, as_json, _rollout_line(state.to_dict() if state else None))


@rollout_app.command("resume")
def rollout_resume(reason: Annotated[str, typer.Option(help="why it may go on (audited)")],
                   as_json: JsonFlag = False) -> None:
    """Let a paused (Inconclusive) rollout go on: its step starts again. The DAG measures it on its next run."""
    from ctloop.flows.rollout import resume_rollout

    settings, params, _ = runtime()
    state = resume_rollout(params, settings, reason, actor="cli")
    emit({"rollout": state.to_dict()}, as_json, _rollout_line(state.to_dict()))


@rollout_app.command("abort")
def rollout_abort(reason: Annotated[str, typer.Option(help="why (audited, tagged on the candidate)")],
                  as_json: JsonFlag = False) -> None:
    """Stop a running or paused rollout: the candidate's weight goes to 0 and it needs a new gate pass."""
    from ctloop.flows.rollout import abort_rollout

    settings, params, _ = runtime()
    state = abort_rollout(params, settings, reason, actor="cli")
    emit({"rollout": state.to_dict()}, as_json, _rollout_line(state.to_dict()))
