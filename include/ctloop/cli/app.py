"""The ``ctloop`` Typer app, its verb groups and what every verb shares: ``--json`` output, the runtime
(settings, params, lake) and the exit codes.

Exit codes (DESIGN.md): 0 ok; 1 the check ran and failed; 2 bad input or usage, with one line naming the
file, the column and what was expected. Every reporting verb takes ``--json`` (one object on stdout).
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ctloop.core.errors import UsageError, shown

if TYPE_CHECKING:
    from ctloop.core.params import Params
    from ctloop.core.settings import Settings
    from ctloop.data.store import Lake

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
simulate_app = typer.Typer(no_args_is_help=True, help="Deterministic simulated data.")
suite_app = typer.Typer(no_args_is_help=True, help="Great Expectations suites.")
airflow_app = typer.Typer(no_args_is_help=True, help="The local Airflow (embedded default).")
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit log of every decision.")
golden_app = typer.Typer(no_args_is_help=True, help="The golden set: reviewed cases every challenger must get right.")
alerts_app = typer.Typer(no_args_is_help=True, help="Alerts on the alerts connection.")
labels_app = typer.Typer(no_args_is_help=True, help="Delayed labels from a real system (labels.path, POST /feedback).")
owners_app = typer.Typer(no_args_is_help=True, help="Which team owns which model, in Airflow and MLflow.")
rollout_app = typer.Typer(no_args_is_help=True, help="Staged rollouts: a gated candidate earns its traffic step by step.")
app.add_typer(rollout_app, name="rollout")
app.add_typer(labels_app, name="labels")
app.add_typer(owners_app, name="owners")
app.add_typer(audit_app, name="audit")
app.add_typer(golden_app, name="golden")
app.add_typer(simulate_app, name="simulate")
app.add_typer(suite_app, name="suite")
app.add_typer(airflow_app, name="airflow")
app.add_typer(alerts_app, name="alerts")

@app.callback()
def root(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="also show the libraries' log lines and "
                                                "warnings on stderr")] = False,
         model: Annotated[str | None, typer.Option("--model", "-m", envvar="CTLOOP_MODEL", metavar="NAME",
                                                   help="the model to act for (models/NAME.yaml); may also follow "
                                                        "the verb. Default: the only model")] = None) -> None:
    """ctloop: continuous training and evaluation on Airflow, MLflow, GX, Evidently and DVC."""
    if model is not None:
        import os

        from ctloop.core.settings import get_settings

        os.environ["CTLOOP_MODEL"] = model  # processes this verb starts act for the same model
        get_settings.cache_clear()
    if verbose:
        import logging

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)


def quiet_libraries() -> Path | None:
    """The libraries' log lines and warnings (MLflow's schema hints, GX's progress, ...) go to
    ``CTLOOP_HOME/logs/ctloop.log``, not between the CLI's own lines (``-v`` shows them too). Returns the
    log file, or None when the home cannot be written (then they stay quiet)."""
    import logging
    import os
    import warnings

    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    logging.captureWarnings(False)  # re-install: a library (Airflow) may have replaced warnings.showwarning
    warnings.showwarning = warnings._showwarning_orig  # type: ignore[attr-defined]
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    root_logger = logging.getLogger()
    root_logger.setLevel(logging.INFO)
    for old in list(root_logger.handlers):
        root_logger.removeHandler(old)
    try:
        from ctloop.core.settings import get_settings

        path = get_settings().home / "logs" / "ctloop.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path)
    except Exception:  # an unwritable home must not break the verb; its own error, if any, comes later
        path, handler = None, logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    root_logger.addHandler(handler)
    return path


JsonFlag = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


def parse_day(value: str, option: str) -> date:
    """A ``YYYY-MM-DD`` option value, or a one-line :class:`UsageError` naming the option (exit 2)."""
    try:
        if len(value) == 10 and value[4] == value[7] == "-":
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise UsageError(f"{option} {shown(value)}: expected a date YYYY-MM-DD")


def parse_days(day: str | None, start: str | None, end: str | None, verb: str) -> list[date]:
    """``--date DAY``, or ``--start DAY --end DAY`` (inclusive), as the days they name."""
    from datetime import timedelta

    if (day is None) == (start is None and end is None) or (day is None and (start is None or end is None)):
        raise UsageError(f"{verb}: give --date DAY, or --start DAY and --end DAY")
    first = parse_day(day, "--date") if day is not None else parse_day(str(start), "--start")
    last = first if day is not None else parse_day(str(end), "--end")
    if last < first:
        raise UsageError(f"--end {last} is before --start {first}")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def emit(obj: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(obj, default=str) + "\n")
    else:
        typer.echo(text)


def runtime() -> tuple[Settings, Params, Lake]:
    from ctloop.core.params import load_params
    from ctloop.core.settings import get_settings
    from ctloop.data.store import Lake

    settings = get_settings()
    return settings, load_params(settings.spec_path), Lake(settings.lake_root)


def alert_in_process(entry: dict[str, Any], settings: Any) -> None:
    """Alert-worthy decisions of a CLI verb go out through the alerts connection; Airflow (the notifiers)
    is imported only when one happens."""
    from ctloop.decisions.alerts import alert_from_audit

    if alert_from_audit(entry) is not None:
        from ctloop.core.logs import library_output_to_log

        # Airflow prints its own log lines (structlog, to the console): they are not this verb's output
        with library_output_to_log("airflow"):
            from ctloop.airflow_edge import alert_on_audit

            quiet_libraries()  # importing Airflow configured logging to its console: back to the log file
            alert_on_audit(entry, settings)
