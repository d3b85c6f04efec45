"""``ctloop`` verbs: drift between two datasets and one monitoring window."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ctloop.cli.app import JsonFlag, app, emit, parse_day, runtime


@app.command()
def drift(
    reference: Annotated[Path, typer.Option("--reference", help="reference Parquet file or directory")],
    current: Annotated[Path, typer.Option("--current", help="current Parquet file or directory")],
    report: Annotated[Path | None, typer.Option("--report", help="write Evidently's HTML report here")] = None,
    fail_on_drift: Annotated[bool, typer.Option("--fail-on-drift", help="exit 1 when the dataset drifted")] = False,
    columns: Annotated[str | None, typer.Option(help="comma-separated columns (default: the contract's features "
                                                "present, else every column)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Evidently data drift between two Parquet datasets of any size (bounded uniform samples)."""
    from ctloop.flows.monitor import drift_policy
    from ctloop.monitoring.drift import drift_between_files, parquet_columns

    _, params, _ = runtime()
    names = parquet_columns(reference)
    parquet_columns(current)  # both sides readable before any work
    wanted = columns.split(",") if columns else ([c for c in params.dataset.features if c in names] or names)
    result = drift_between_files(reference, current, params.dataset, drift_policy(params), wanted, report)
    body = result.to_dict()
    body.pop("share_threshold")
    emit(body, as_json, f"dataset drift: {result.dataset_drift} ({result.drift_share:.0%} of "
                         f"{len(result.columns)} columns: {', '.join(result.drifted_columns) or 'none'})")
    if fail_on_drift and result.dataset_drift:
        raise typer.Exit(1)

@app.command()
def monitor(
    day: Annotated[str, typer.Option("--date", help="the window, YYYY-MM-DD")],
    as_json: JsonFlag = False,
) -> None:
    """Assess one monitoring window outside Airflow (drift, labeled quality, the policy's decision)."""
    from ctloop.flows.monitor import assess_window

    settings, params, lake = runtime()
    summary = assess_window(lake, params, settings, parse_day(day, "--date")).to_dict()
    d = summary["decision"]
    emit(summary, as_json, f"{day}: {d['status']} (trigger: {d['trigger']})\n  - " + "\n  - ".join(d["reasons"]))
