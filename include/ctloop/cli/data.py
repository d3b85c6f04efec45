"""``ctloop`` verbs: data in: simulated batches and traffic, suites, validation, ingestion, Data Docs."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from ctloop.cli.app import (
    JsonFlag,
    app,
    emit,
    labels_app,
    parse_day,
    parse_days,
    runtime,
    simulate_app,
    suite_app,
)
from ctloop.core.errors import CtloopError


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
                              drift_start=parse_day(drift_start, "--drift-start") if drift_start is not None else None)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    frame = simulate_day(day.date() if hasattr(day, "date") else day, spec)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    typer.echo(f"{out}: {len(frame)} rows ({scenario})")


@simulate_app.command("traffic")
def simulate_traffic_cmd(
    start: Annotated[str, typer.Option("--start", help="first day, YYYY-MM-DD")],
    days: Annotated[int, typer.Option(help="number of days")] = 1,
    scenario: Annotated[str, typer.Option(help="simulator scenario")] = "stable",
    drift_start: Annotated[str | None, typer.Option("--drift-start", help="YYYY-MM-DD")] = None,
    rows_per_day: Annotated[int, typer.Option("--rows-per-day")] = 2000,
    label_delay_days: Annotated[int, typer.Option("--label-delay-days")] = 2,
    label_fraction: Annotated[float, typer.Option("--label-fraction")] = 0.5,
    url: Annotated[str | None, typer.Option(help="send the requests to `ctloop serve` at this URL")] = None,
    batch: Annotated[int, typer.Option(help="records per HTTP request (with --url)")] = 25,
    concurrency: Annotated[int, typer.Option(help="parallel HTTP requests (with --url)")] = 4,
    as_json: JsonFlag = False,
) -> None:
    """Simulated requests scored by @champion into the prediction log (in-process, or through a running
    `ctloop serve` with --url); labels arrive K days later."""
    from ctloop.data.simulator import SCENARIOS
    from ctloop.dev.traffic import TrafficSpec, simulate_traffic

    if scenario not in SCENARIOS:
        raise typer.BadParameter(f"unknown scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}")
    if not 0 <= label_fraction <= 1:
        raise typer.BadParameter(f"--label-fraction must be within [0, 1], got {label_fraction}")
    settings, params, lake = runtime()
    spec = TrafficSpec(parse_day(start, "--start"), days, scenario,
                       parse_day(drift_start, "--drift-start") if drift_start is not None else None, rows_per_day,
                       label_delay_days, label_fraction)
    if url:
        from ctloop.dev.client import http_client, send_traffic, wait_ready

        token = settings.serving_token.get_secret_value() if settings.serving_token else None
        with http_client(url, token) as client:
            wait_ready(client, timeout=30)
            out = send_traffic(client, spec, params, lake, batch, concurrency)
    else:
        out = simulate_traffic(spec, params, settings, lake)
    emit({"days": out}, as_json, "\n".join(f"{d['date']}: {d['rows']} requests scored by v{d['champion']}, "
                                              f"{d['labels']} labels arrive {d['labels_arrive']}" for d in out))


@suite_app.command("build")
def suite_build(
    source: Annotated[Path, typer.Option("--from", help="reference data: a Parquet or CSV file, or a directory "
                                         "of them (e.g. two weeks of daily deliveries)")],
    as_json: JsonFlag = False,
) -> None:
    """Bootstrap the batch expectation suite from reference data and params.yaml (review, then commit it).
    The contract's expectations fail a batch; what the reference taught gets a warn and a fail level."""
    from ctloop.data.reading import read_batches
    from ctloop.validation.context import open_context
    from ctloop.validation.suite import build_suite, build_training_suite, expectation_specs

    settings, params, _ = runtime()
    reference = read_batches(source, params.dataset)
    missing = [c for c in params.dataset.columns if c not in reference.columns]
    if missing:
        raise CtloopError(f"{source}: column {missing[0]!r} of the dataset contract is missing from the reference data")
    context = open_context(settings)
    name = build_suite(context, reference, params)
    training = build_training_suite(context, params)
    n = len(expectation_specs(reference, params))
    emit({"suite": name, "expectations": n, "reference_rows": len(reference), "training_suite": training,
           "path": str(settings.gx_dir)},
          as_json, f"suite {name}: {n} expectations from {len(reference)} reference rows; training-set suite "
                   f"{training}; in {settings.gx_dir}/expectations")


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="batch to validate (Parquet or CSV)")],
    suite: Annotated[str | None, typer.Option(help="suite name (default: validation.suite)")] = None,
    day: Annotated[str | None, typer.Option("--date", help="data interval YYYY-MM-DD: bounds timestamps")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Validate a file: exit 0 pass, 1 validation failed, 2 unreadable or missing file."""
    from ctloop.data.reading import read_batch
    from ctloop.flows.ingest import interval_of
    from ctloop.validation.context import open_context
    from ctloop.validation.run import validate_frame

    settings, params, _ = runtime()
    frame = read_batch(file, params.dataset)
    interval = interval_of(parse_day(day, "--date")) if day is not None else None
    report = validate_frame(frame, params, open_context(settings), interval=interval, suite_name=suite,
                            source=str(file))
    emit(report.to_dict(), as_json, f"{file}: {'PASSED' if report.success else 'FAILED'}: {report.summary()}")
    if not report.success:
        raise typer.Exit(1)


@app.command()
def ingest(
    day: Annotated[str | None, typer.Option("--date", help="one data interval, YYYY-MM-DD")] = None,
    start: Annotated[str | None, typer.Option("--start", help="first day of a range (with --end)")] = None,
    end: Annotated[str | None, typer.Option("--end", help="last day of a range, inclusive")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Ingest outside Airflow: extract, validate, publish or quarantine one day (--date) or a range
    (--start/--end, in one process: a year of small days in minutes). Exit 1 when a day was quarantined."""
    from rich.console import Console

    from ctloop.flows.ingest import ingest_days
    from ctloop.validation.context import open_context

    days = parse_days(day, start, end, "ingest")
    first, last = days[0], days[-1]
    settings, params, lake = runtime()
    console = Console(stderr=True)
    show = None if as_json or len(days) == 1 or not console.is_terminal else (
        lambda o: console.print(o.line(), highlight=False))
    outcomes = ingest_days(days, params, lake, open_context(settings), progress=show, settings=settings)
    if day is not None:
        emit(outcomes[0].to_dict(), as_json, outcomes[0].line())
    else:
        curated = sum(o.status == "curated" for o in outcomes)
        warned = sum(bool(o.warnings) for o in outcomes)
        emit({"days": [o.to_dict() for o in outcomes], "curated": curated, "quarantined": len(outcomes) - curated,
              "with_warnings": warned}, as_json,
             "\n".join(o.line() for o in outcomes if o.status != "curated" or o.warnings)
             + f"\n{first}..{last}: {curated} of {len(outcomes)} days curated ({warned} with warnings), "
               f"{len(outcomes) - curated} quarantined")
    if any(o.status != "curated" for o in outcomes):
        raise typer.Exit(1)


@app.command()
def docs(as_json: JsonFlag = False) -> None:
    """Build the Great Expectations Data Docs into CTLOOP_HOME (working offline: their CSS and JavaScript
    vendored by make setup) and print where they are."""
    from ctloop.validation.docs import build_docs

    settings, _, _ = runtime()
    index, localized = build_docs(settings)
    note = ("works offline" if localized.offline else
            f"{len(localized.missing)} asset(s) still load from CDNs ({localized.vendor} missing: run make setup)")
    emit({"data_docs": str(index)} | localized.to_dict(), as_json, f"Data Docs: {index} ({note})")


@labels_app.command("ingest")
def labels_ingest(
    day: Annotated[str | None, typer.Option("--date", help="the day the labels arrived, YYYY-MM-DD")] = None,
    start: Annotated[str | None, typer.Option("--start", help="first day of a range (with --end)")] = None,
    end: Annotated[str | None, typer.Option("--end", help="last day of a range, inclusive")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Ingest label deliveries (labels.path) outside Airflow: checked against the labels contract, stored
    for the monitor, or quarantined whole (exit 1)."""
    from ctloop.flows.labels import ingest_labels

    settings, params, lake = runtime()
    outcomes = [ingest_labels(d, params, settings, lake) for d in parse_days(day, start, end, "labels ingest")]
    if day is not None:
        emit(outcomes[0].to_dict(), as_json, outcomes[0].line())
    else:
        emit({"days": [o.to_dict() for o in outcomes]}, as_json, "\n".join(o.line() for o in outcomes))
    if any(o.status == "quarantined" for o in outcomes):
        raise typer.Exit(1)
