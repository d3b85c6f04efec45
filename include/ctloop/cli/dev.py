"""``ctloop`` verbs: the embedded default: local stores, the local Airflow and the demo."""

from __future__ import annotations

from typing import Annotated

import typer

from ctloop.cli.app import airflow_app, app
from ctloop.core.errors import CtloopError


@app.command()
def init() -> None:
    """Create the local stores under CTLOOP_HOME (lake, MLflow, Airflow home and metadata DB)."""
    from ctloop.dev.stores import init_stores

    for line in init_stores():
        typer.echo(line)


@airflow_app.command("up")
def airflow_up() -> None:
    """Start api-server, scheduler, dag-processor and triggerer in the background (UI on CTLOOP_AIRFLOW_PORT)."""
    from ctloop.dev.local_airflow import LocalAirflow

    af = LocalAirflow.from_settings()
    af.start(wait=True, detach=True)
    typer.echo(af.login_hint())


@airflow_app.command("down")
def airflow_down() -> None:
    """Stop the local Airflow started by `ctloop airflow up`."""
    from ctloop.dev.local_airflow import LocalAirflow

    stopped = LocalAirflow.from_settings().stop_detached()
    typer.echo(f"stopped {stopped} Airflow process group(s)")


@app.command()
def demo(
    days: Annotated[int, typer.Option(help="days to backfill before the first retrain")] = 14,
    extra_days: Annotated[int, typer.Option("--extra-days", help="days ingested before the second retrain")] = 7,
    scenario: Annotated[str, typer.Option(help="what happens in production: covariate_shift, concept_shift, "
                                          "label_shift, upstream_bug, new_category, stable, seasonal")] = "covariate_shift",
    production_days: Annotated[int, typer.Option("--production-days", help="days of monitored traffic")] = 14,
    second_model: Annotated[bool, typer.Option("--second-model/--one-model",
                                               help="run the flights regression (real data) beside the tickets "
                                                    "model")] = True,
) -> None:
    """Run the main job on the embedded default through the real Airflow scheduler and print what happened."""
    from ctloop.data.simulator import SCENARIOS
    from ctloop.dev.demo import run_demo

    if scenario not in SCENARIOS or scenario == "schema_break":
        raise typer.BadParameter(f"unknown scenario {scenario!r}")
    run_demo(days=days, extra_days=extra_days, scenario=scenario, production_days=production_days,
             second_model=second_model)


@app.command("demo-llm")
def demo_llm(
    tickets: Annotated[int, typer.Option(help="tickets sent at most while the new prompt version rolls out")] = 400,
) -> None:
    """The support-triage LLM app on the local model (make llm-extra): prompt versions gated (one rejected for a
    prompt-injection failure), one rolled out step by step on `ctloop serve`, token use and cost per version."""
    from ctloop.dev.llm_demo import DemoFailed, run_llm_demo

    try:
        run_llm_demo(tickets=tickets)
    except DemoFailed as e:
        raise CtloopError(str(e)) from e
