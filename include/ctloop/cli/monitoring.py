"""``ctloop`` verbs: drift between two datasets and one monitoring window."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ctloop.cli.app import JsonFlag, app, emit, parse_day, runtime
from ctloop.core.errors import UsageError


@app.command()
def drift(
    reference: Annotated[Path, typer.Option("--reference", help="reference Parquet file or directory")],
    current: Annotated[Path, typer.Option("--current", help="current Parquet file or directory")],
    report: Annotated[Path | None, typer.Option("--report", help="write Evidently's HTML report here")] = None,
    fail_on_drift: Annotated[bool, typer.Option("--fail-on-drift", help="exit 1 when the dataset drifted")] = False,
    columns: Annotated[str | None, typer.Option(help="comma-separated columns (default: the contract's features "
                                                "when both files carry all of them, else every common column)")] = None,
    calibrate_by: Annotated[str | None, typer.Option("--calibrate-by", help="a timestamp column of the reference: "
                                                     "calibrate each column's threshold on its days")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Evidently data drift between two Parquet datasets of any size (bounded uniform samples). The JSON
    says which columns were compared and why, and which thresholds were used."""
    from ctloop.flows.monitor import drift_policy
    from ctloop.monitoring.drift import choose_columns, drift_between_files, parquet_columns

    _, params, _ = runtime()
    ref_names, cur_names = parquet_columns(reference), parquet_columns(current)
    if columns:
        wanted, why = columns.split(","), "asked for with --columns"
        absent = [c for c in wanted if c not in ref_names or c not in cur_names]
        if absent:
            raise UsageError(f"--columns: {absent[0]!r} is not in both files ({reference}, {current})")
    else:
        wanted, why = choose_columns(ref_names, cur_names, params.dataset, exclude=[calibrate_by] if calibrate_by else [])
    if calibrate_by is not None and calibrate_by not in ref_names:
        raise UsageError(f"--calibrate-by: {reference} has no column {calibrate_by!r}")
    result, calibration = drift_between_files(reference, current, params.dataset, drift_policy(params), wanted,
                                              report, calibrate_by=calibrate_by, k=params.monitoring.calibration_k)
    body = result.to_dict() | {"compared": wanted, "why": why,
                               "thresholds": "calibrated" if calibration is not None else "fixed (Evidently's)"}
    body.pop("share_threshold")
    emit(body, as_json, f"dataset drift: {result.dataset_drift} ({result.drift_share:.0%} of "
                        f"{len(result.columns)} columns: {', '.join(result.drifted_columns) or 'none'}); "
                        f"compared {why}; thresholds {body['thresholds']}")
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
