"""``ctloop models``: the deployment's models with their champion, last run and last drift decision."""

from __future__ import annotations

from typing import Annotated

import typer

from ctloop.cli.app import JsonFlag, app, emit, owners_app


@app.command()
def models(as_json: JsonFlag = False,
           no_registry: Annotated[bool, typer.Option("--no-registry", help="do not ask MLflow for the champions "
                                                     "(the specs, runs and drift decisions only)")] = False) -> None:
    """Every model of the deployment (models/<name>.yaml): its task, champion, last DAG run and last drift
    decision. A spec that does not validate is listed with its error, and the verb exits 1."""
    from ctloop.core.settings import get_settings
    from ctloop.flows.deployment import describe_models

    settings = get_settings()
    overview = describe_models(settings, with_registry=not no_registry)
    broken = [m for m in overview if m.error]
    if as_json:
        emit({"models_dir": str(settings.models_dir), "models": [m.to_dict() for m in overview]}, True, "")
    else:
        from rich.console import Console

        from ctloop.views import models_table

        Console(width=None if Console().is_terminal else 160).print(models_table(overview))
    if broken:
        raise typer.Exit(1)


@owners_app.command("list")
def owners_list(as_json: JsonFlag = False,
                teams: Annotated[bool, typer.Option("--teams", help="only the owning teams, one per line (for "
                                                    "scripts such as deploy/airflow/init.sh)")] = False) -> None:
    """Each owned model (``owner:`` in its spec) with its team, the team's Airflow and MLflow role and the
    DAGs the role may edit and trigger."""
    from ctloop.core.settings import get_settings
    from ctloop.flows.owners import deployment_ownerships

    broken: list[str] = []
    owned = deployment_ownerships(get_settings(), broken)
    for error in broken:  # that model gets no team grants; the others do (its DAGs are an import error)
        typer.echo(f"ctloop: warning: {error}", err=True)
    if teams:
        for team in sorted({o.team for o in owned}):
            typer.echo(team)
        return
    rows = [{"model": o.model, "team": o.team, "role": o.role, "registered_model": o.registered_model,
             "experiment": o.experiment, "dags": list(o.dag_ids)} for o in owned]
    emit({"owners": rows}, as_json, "\n".join(f"{r['model']}: team {r['team']} (role {r['role']}): "
                                              f"{r['registered_model']}, {r['experiment']}, {len(r['dags'])} DAGs"
                                              for r in rows) or "no model names an owner")


@owners_app.command("grant")
def owners_grant(as_json: JsonFlag = False) -> None:
    """Give each owning team EDIT on its models in the MLflow basic-auth server (an RBAC role per team; its
    service user from CTLOOP_TEAM_<TEAM>_MLFLOW_PASSWORD). Idempotent; changes land in the audit log."""
    from ctloop.core.settings import get_settings
    from ctloop.flows.owners import grant_mlflow

    grants = grant_mlflow(get_settings())
    emit({"grants": [g.to_dict() for g in grants]}, as_json,
         "\n".join(f"{g.team}: role {g.role} on {', '.join(g.models)}: "
                   + ("; ".join(g.added) if g.added else "already granted")
                   + "".join(f" ({n})" for n in g.notes) for g in grants) or "no model names an owner")
