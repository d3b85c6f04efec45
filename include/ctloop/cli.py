"""``ctloop <verb>``: the public face. DAG tasks, ``dvc.yaml`` stages and tests call the same functions.

Exit codes (DESIGN.md): 0 ok; 1 the check ran and failed; 2 bad input or usage, with one line naming the
file, the column and what was expected. Every reporting verb takes ``--json`` (one object on stdout).
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.exceptions import TyperException

from ctloop.errors import CtloopError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="ctloop: continuous training and evaluation on Airflow, MLflow, GX, Evidently and DVC.")
simulate_app = typer.Typer(no_args_is_help=True, help="Deterministic simulated data.")
suite_app = typer.Typer(no_args_is_help=True, help="Great Expectations suites.")
airflow_app = typer.Typer(no_args_is_help=True, help="The local Airflow (embedded default).")
app.add_typer(simulate_app, name="simulate")
app.add_typer(suite_app, name="suite")
app.add_typer(airflow_app, name="airflow")

JsonFlag = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


def _emit(obj: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(obj, default=str) + "\n")
    else:
        typer.echo(text)


def _runtime():  # type: ignore[no-untyped-def]
    from ctloop.data.store import Lake
    from ctloop.params import load_params
    from ctloop.settings import get_settings

    settings = get_settings()
    return settings, load_params(settings.params), Lake(settings.lake_root)


@app.command()
def init() -> None:
    """Create the local stores under CTLOOP_HOME (lake, MLflow, Airflow home and metadata DB)."""
    from ctloop.stores import init_stores

    for line in init_stores():
        typer.echo(line)


@simulate_app.command("batch")
def simulate_batch(
    day: Annotated[date, typer.Option("--date", formats=["%Y-%m-%d"], help="the day to simulate")],
    out: Annotated[Path, typer.Option("--out", help="output file (.parquet or .csv)")],
    scenario: Annotated[str, typer.Option(help="stable, seasonal, covariate_shift, ...")] = "stable",
    drift_start: Annotated[str | None, typer.Option("--drift-start", help="YYYY-MM-DD")] = None,
    rows: Annotated[int, typer.Option(help="rows for the day")] = 2000,
    magnitude: Annotated[float, typer.Option(help="strength of the scenario")] = 1.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
) -> None:
    """Write one day's labeled batch; the same arguments give the same bytes."""
    from ctloop.data.simulator import SimulationSpec, simulate_day

    try:
        spec = SimulationSpec(scenario=scenario, rows=rows, magnitude=magnitude, seed=seed,
                              drift_start=date.fromisoformat(drift_start) if drift_start else None)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    frame = simulate_day(day.date() if hasattr(day, "date") else day, spec)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    typer.echo(f"{out}: {len(frame)} rows ({scenario})")


@suite_app.command("build")
def suite_build(
    source: Annotated[Path, typer.Option("--from", help="reference data (Parquet or CSV)")],
    as_json: JsonFlag = False,
) -> None:
    """Bootstrap the batch expectation suite from reference data and params.yaml (review, then commit it)."""
    from ctloop.data.reading import read_batch
    from ctloop.validation.context import open_context
    from ctloop.validation.suite import build_suite, expectation_specs

    settings, params, _ = _runtime()
    reference = read_batch(source, params.dataset)
    missing = [c for c in params.dataset.columns if c not in reference.columns]
    if missing:
        raise CtloopError(f"{source}: column {missing[0]!r} of the dataset contract is missing from the reference data")
    name = build_suite(open_context(settings), reference, params)
    n = len(expectation_specs(reference, params))
    _emit({"suite": name, "expectations": n, "reference_rows": len(reference), "path": str(settings.gx_dir)},
          as_json, f"suite {name}: {n} expectations from {len(reference)} reference rows in {settings.gx_dir}/expectations")


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="batch to validate (Parquet or CSV)")],
    suite: Annotated[str | None, typer.Option(help="suite name (default: validation.suite)")] = None,
    day: Annotated[str | None, typer.Option("--date", help="data interval YYYY-MM-DD: bounds timestamps")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Validate a file: exit 0 pass, 1 validation failed, 2 unreadable or missing file."""
    from ctloop.data.reading import read_batch
    from ctloop.ingest import interval_of
    from ctloop.validation.context import open_context
    from ctloop.validation.run import validate_frame

    settings, params, _ = _runtime()
    frame = read_batch(file, params.dataset)
    interval = interval_of(date.fromisoformat(day)) if day else None
    report = validate_frame(frame, params, open_context(settings), interval=interval, suite_name=suite,
                            source=str(file))
    _emit(report.to_dict(), as_json, f"{file}: {'PASSED' if report.success else 'FAILED'}: {report.summary()}")
    if not report.success:
        raise typer.Exit(1)


@app.command()
def ingest(
    day: Annotated[str, typer.Option("--date", help="data interval YYYY-MM-DD")],
    as_json: JsonFlag = False,
) -> None:
    """Ingest one day outside Airflow: extract, validate, publish or quarantine (exit 1 when quarantined)."""
    from ctloop.ingest import ingest_day
    from ctloop.validation.context import open_context

    settings, params, lake = _runtime()
    outcome = ingest_day(date.fromisoformat(day), params, lake, open_context(settings))
    _emit(outcome.to_dict(), as_json, f"{day}: {outcome.status} ({outcome.rows} rows) -> {outcome.location}")
    if outcome.status != "curated":
        raise typer.Exit(1)


@app.command()
def docs(as_json: JsonFlag = False) -> None:
    """Build the Great Expectations Data Docs into CTLOOP_HOME and print where they are."""
    from ctloop.validation.context import open_context

    settings, _, _ = _runtime()
    open_context(settings).build_data_docs()
    index = settings.data_docs_dir / "index.html"
    _emit({"data_docs": str(index)}, as_json, f"Data Docs: {index}")


@app.command()
def demo(
    days: Annotated[int, typer.Option(help="days to backfill")] = 14,
    scenario: Annotated[str, typer.Option(help="simulator scenario for the traffic")] = "covariate_shift",
) -> None:
    """Run the main job on the embedded default through the real Airflow scheduler and print what happened."""
    from ctloop.demo import run_demo

    run_demo(days=days, scenario=scenario)


@airflow_app.command("up")
def airflow_up() -> None:
    """Start api-server, scheduler, dag-processor and triggerer in the background (UI on CTLOOP_AIRFLOW_PORT)."""
    from ctloop.airflow_runtime import LocalAirflow

    af = LocalAirflow.from_settings()
    af.start(wait=True, detach=True)
    typer.echo(af.login_hint())


@airflow_app.command("down")
def airflow_down() -> None:
    """Stop the local Airflow started by `ctloop airflow up`."""
    from ctloop.airflow_runtime import LocalAirflow

    stopped = LocalAirflow.from_settings().stop_detached()
    typer.echo(f"stopped {stopped} Airflow process group(s)")


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except CtloopError as e:
        typer.echo(f"ctloop: error: {e}", err=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(130)
    except TyperException as e:  # usage errors (bad option values) surface here in non-standalone mode
        show = getattr(e, "show", None)
        if show is not None:
            show()
        sys.exit(2)
    # in non-standalone mode click returns the code of typer.Exit instead of raising it
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
