"""``ctloop models``: the deployment's models with their champion, last run and last drift decision."""

from __future__ import annotations

from typing import Annotated

import typer

from ctloop.cli.app import JsonFlag, app, emit


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
