"""``ctloop <verb>``: the public face. DAG tasks, ``dvc.yaml`` stages and tests call the same functions.

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
from typer.exceptions import TyperException

from ctloop.errors import ConfigError, CtloopError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="ctloop: continuous training and evaluation on Airflow, MLflow, GX, Evidently and DVC.")
simulate_app = typer.Typer(no_args_is_help=True, help="Deterministic simulated data.")
suite_app = typer.Typer(no_args_is_help=True, help="Great Expectations suites.")
airflow_app = typer.Typer(no_args_is_help=True, help="The local Airflow (embedded default).")
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit log of every decision.")
app.add_typer(audit_app, name="audit")
golden_app = typer.Typer(no_args_is_help=True, help="The golden set: reviewed cases every challenger must get right.")
app.add_typer(golden_app, name="golden")
app.add_typer(simulate_app, name="simulate")
app.add_typer(suite_app, name="suite")
app.add_typer(airflow_app, name="airflow")


if TYPE_CHECKING:
    from ctloop.data.store import Lake
    from ctloop.params import Params
    from ctloop.settings import Settings

JsonFlag = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


def _emit(obj: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(obj, default=str) + "\n")
    else:
        typer.echo(text)


def _runtime() -> tuple[Settings, Params, Lake]:
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
    from ctloop.monitoring.traffic import TrafficSpec, simulate_traffic

    if scenario not in SCENARIOS:
        raise typer.BadParameter(f"unknown scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}")
    if not 0 <= label_fraction <= 1:
        raise typer.BadParameter(f"--label-fraction must be within [0, 1], got {label_fraction}")
    settings, params, lake = _runtime()
    spec = TrafficSpec(date.fromisoformat(start), days, scenario,
                       date.fromisoformat(drift_start) if drift_start else None, rows_per_day,
                       label_delay_days, label_fraction)
    if url:
        from ctloop.serving.client import http_client, send_traffic, wait_ready

        token = settings.serving_token.get_secret_value() if settings.serving_token else None
        with http_client(url, token) as client:
            wait_ready(client, timeout=30)
            out = send_traffic(client, spec, params, lake, batch, concurrency)
    else:
        out = simulate_traffic(spec, params, settings, lake)
    _emit({"days": out}, as_json, "\n".join(f"{d['date']}: {d['rows']} requests scored by v{d['champion']}, "
                                              f"{d['labels']} labels arrive {d['labels_arrive']}" for d in out))


@suite_app.command("build")
def suite_build(
    source: Annotated[Path, typer.Option("--from", help="reference data (Parquet or CSV)")],
    as_json: JsonFlag = False,
) -> None:
    """Bootstrap the batch expectation suite from reference data and params.yaml (review, then commit it)."""
    from ctloop.data.reading import read_batch
    from ctloop.validation.context import open_context
    from ctloop.validation.suite import build_suite, build_training_suite, expectation_specs

    settings, params, _ = _runtime()
    reference = read_batch(source, params.dataset)
    missing = [c for c in params.dataset.columns if c not in reference.columns]
    if missing:
        raise CtloopError(f"{source}: column {missing[0]!r} of the dataset contract is missing from the reference data")
    context = open_context(settings)
    name = build_suite(context, reference, params)
    training = build_training_suite(context, params)
    n = len(expectation_specs(reference, params))
    _emit({"suite": name, "expectations": n, "reference_rows": len(reference), "training_suite": training,
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


DataDir = Annotated[Path, typer.Option("--data-dir", help="training-set directory written by `ctloop prepare`")]


@app.command()
def prepare(
    out_dir: Annotated[Path, typer.Option("--out-dir", help="where train/test parquet and window.json go")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="window end (exclusive), YYYY-MM-DD; default: "
                                              "the day after the newest curated partition")] = None,
    window_days: Annotated[int | None, typer.Option("--window-days", help="default training.window_days")] = None,
    reason: Annotated[str, typer.Option(help="why this training set is built")] = "ctloop CLI",
    as_json: JsonFlag = False,
) -> None:
    """Build the training set from curated partitions, split by time, and validate it (training-set suite)."""
    from ctloop.retrain import describe_trigger, validate_training_set
    from ctloop.retrain import prepare as prepare_set

    settings, params, lake = _runtime()
    info = prepare_set(params, lake, date.fromisoformat(as_of) if as_of else None, window_days, out_dir,
                       describe_trigger(None, reason, None))
    info["validation"] = validate_training_set(params, settings, out_dir)
    w = info["window"]
    _emit(info, as_json, f"training set [{w['start']}, {w['end']}): {info['train_rows']} train rows "
                         f"({len(w['train_days'])} days), {info['test_rows']} test rows ({', '.join(w['test_days'])}) -> {out_dir}")


RunDir = Annotated[Path | None, typer.Option("--run-dir", help="where train.json, evaluation.json and "
                                             "metrics.json go (default: the data dir)")]


def _flat_metrics(evaluation_file: Path) -> dict[str, Any]:
    """The evaluation's headline numbers by role, the shape ``dvc metrics show`` tabulates."""
    record = json.loads(evaluation_file.read_text())
    return {role: {k: round(v, 6) for k, v in record[role]["metrics"].items()}
            for role in ("challenger", "champion") if record.get(role)} | {"test_rows": record["test_rows"]}


@app.command()
def train(
    data_dir: DataDir,
    model: Annotated[str | None, typer.Option(help="logistic_regression | hist_gradient_boosting")] = None,
    run_dir: RunDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Train the challenger, log it to MLflow, register a new version with alias `challenger`."""
    from ctloop.retrain import train as train_model

    settings, params, _ = _runtime()
    result = train_model(params, settings, data_dir, model=model)
    out = run_dir or data_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(json.dumps(result, indent=1))
    _emit(result, as_json, f"challenger v{result['version']} ({result['model']}), run {result['run_id']}; "
                           f"log_model {result['log_model_seconds']}s")


@app.command()
def evaluate(
    data_dir: DataDir,
    version: Annotated[str | None, typer.Option(help="challenger version (default: from train.json)")] = None,
    run_dir: RunDir = None,
    suites: Annotated[str | None, typer.Option(help="all | none | comma-separated: golden, behavioural, "
                                               "adversarial, budgets, shadow (default: evaluation.suites)")] = None,
    plots: Annotated[Path | None, typer.Option(help="write ROC and calibration points (CSV, for `dvc plots`) "
                                               "here")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Evaluate challenger and champion on the same test set (mlflow.models.evaluate + slices)."""
    from ctloop.retrain import evaluate as evaluate_models

    settings, params, _ = _runtime()
    out = run_dir or data_dir
    trained = json.loads((out / "train.json").read_text()) if (out / "train.json").exists() else {}
    version = version or trained.get("version")
    if version is None:
        raise CtloopError(f"{out}: no train.json; pass --version")
    run_id = trained.get("run_id") if trained.get("version") == version else None
    from ctloop.params import SUITES

    wanted: list[str] = (list(params.evaluation.suites) if suites is None else list(SUITES) if suites == "all"
              else [] if suites == "none" else [x.strip() for x in suites.split(",")])
    unknown = [x for x in wanted if x not in SUITES]
    if unknown:
        raise typer.BadParameter(f"--suites: unknown {', '.join(unknown)}; expected {', '.join(SUITES)}")
    result = evaluate_models(params, settings, data_dir, version, run_id, out_dir=out, suites=wanted)
    (out / "metrics.json").write_text(json.dumps(_flat_metrics(out / "evaluation.json"), indent=1))
    if plots is not None:
        from ctloop.evaluation.curves import write_curves

        write_curves(params, settings, data_dir, version, plots)
    _emit(result, as_json, f"challenger v{version}: {result['metrics']}; champion: "
                           f"{'v' + result['champion'] if result['champion'] else 'none yet'}"
                           + "".join(f"\n  {line}" for line in result["suites"].values()))


@app.command()
def gate(
    data_dir: DataDir,
    run_dir: RunDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Judge the evaluation with the gate; writes the decision to MLflow. Exit 1 when rejected."""
    from ctloop.retrain import gate as run_gate

    settings, params, _ = _runtime()
    decision = run_gate(params, settings, (run_dir or data_dir) / "evaluation.json")
    verdict = "PROMOTE" if decision.passed else "REJECT"
    _emit(decision.to_dict(), as_json, f"gate: {verdict} v{decision.challenger}\n  - " + "\n  - ".join(decision.reasons))
    if not decision.passed:
        raise typer.Exit(1)


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="model version to make champion")],
    reason: Annotated[str, typer.Option(help="why (recorded on the version)")],
    force: Annotated[bool, typer.Option(help="promote even without a passing gate (recorded as forced)")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Move `champion` to VERSION (compare-and-set); the old champion becomes `previous`."""
    from ctloop.retrain import promote_version

    settings, params, _ = _runtime()
    result = promote_version(params, settings, version, reason, force=force, actor="cli")
    _emit(result, as_json, f"champion: v{result['version']} (was {'v' + result['previous_champion'] if result['previous_champion'] else 'none'})")


@golden_app.command("add")
def golden_add(
    request_ids: Annotated[list[str], typer.Argument(help="request ids from the prediction log")],
    from_log: Annotated[bool, typer.Option("--from-log", help="take the requests from the prediction log")] = True,
    label: Annotated[int, typer.Option(help="the correct decision (the dataset's classes)")] = 1,
    note: Annotated[str, typer.Option(help="why this case matters (reviewed with the diff)")] = "",
    days: Annotated[int, typer.Option(help="how many days of the log to search, back from --until")] = 30,
    until: Annotated[str | None, typer.Option(help="last log day to search (YYYY-MM-DD; default: newest)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Feed real production failures back into the golden set (appends; review and commit the diff)."""
    from datetime import timedelta

    from ctloop.evaluation.golden import add_from_log, append_cases

    settings, params, lake = _runtime()
    if label not in params.dataset.classes:
        raise typer.BadParameter(f"--label {label}: expected one of {params.dataset.classes}")
    if not note.strip():
        raise typer.BadParameter("--note: say why this case belongs in the golden set")
    base = lake.root / "predictions"
    logged = sorted(date.fromisoformat(p.name[3:]) for p in base.glob("dt=*")) if base.exists() else []
    last = date.fromisoformat(until) if until else (logged[-1] if logged else date.today())
    search = [last - timedelta(days=i) for i in range(days)]
    cases = add_from_log(lake, params.dataset, request_ids, label, note, search)
    path = settings.project_dir / params.evaluation.golden.path
    append_cases(path, cases)
    _emit({"added": [c["case_id"] for c in cases], "golden_set": str(path)}, as_json,
          f"added {len(cases)} case(s) to {path}: {', '.join(c['case_id'] for c in cases)}")


@golden_app.command("seed")
def golden_seed(
    source: Annotated[Path, typer.Option("--from", help="reference Parquet with the target column")],
    per_class: Annotated[int, typer.Option("--per-class", help="cases per class")] = 60,
    as_json: JsonFlag = False,
) -> None:
    """Seed the golden set once from reference data: cases the @champion is confident and right about."""
    import mlflow

    from ctloop.data.reading import read_batch
    from ctloop.evaluation.golden import append_cases, seed_cases
    from ctloop.registry.mlflow_registry import configure_mlflow, require_champion
    from ctloop.serving.scoring import score_rows

    settings, params, _ = _runtime()
    name = params.training.registered_model
    version = require_champion(configure_mlflow(settings), name)
    reference = read_batch(source)
    scores = score_rows(mlflow.sklearn.load_model(f"models:/{name}/{version}"), reference, params.dataset).scores
    cases = seed_cases(reference, scores, params.dataset, per_class, f"{source.name} scored by {name} v{version}")
    path = settings.project_dir / params.evaluation.golden.path
    append_cases(path, cases)
    _emit({"added": len(cases), "golden_set": str(path)}, as_json, f"seeded {len(cases)} cases into {path}")


@app.command()
def approve(
    version: Annotated[str, typer.Argument(help="the @candidate version")],
    reason: Annotated[str, typer.Option(help="why it may go live (audited)")],
    as_json: JsonFlag = False,
) -> None:
    """promotion.mode manual: promote a gated candidate. Refused (exit 1) when its gate failed."""
    from ctloop.retrain import promote_version

    settings, params, _ = _runtime()
    result = promote_version(params, settings, version, f"approved: {reason}", actor="cli", kind="approval")
    _emit(result, as_json, f"approved: champion v{result['version']} (was "
                           f"{'v' + result['previous_champion'] if result['previous_champion'] else 'none'})")


@app.command()
def rollback(
    reason: Annotated[str, typer.Option(help="why (audited, recorded on both versions)")],
    to: Annotated[str | None, typer.Option("--to", help="version to restore (default: @previous)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Move `champion` back in one compare-and-set step; the rolled-back version needs a new gate pass."""
    from ctloop.retrain import rollback_version

    settings, params, _ = _runtime()
    result = rollback_version(params, settings, to, reason, actor="cli")
    _emit(result, as_json, f"rolled back: champion v{result['version']} (was v{result['rolled_back']})")


@app.command()
def history(as_json: JsonFlag = False) -> None:
    """Every alias move, oldest first: kind, alias from -> to, who or what, reason, DAG run, time."""
    from ctloop.registry.mlflow_registry import read_history

    settings, params, _ = _runtime()
    entries = read_history(settings, params.training.registered_model)
    if as_json:
        _emit({"model": params.training.registered_model, "history": entries}, True, "")
        return
    for e in entries:
        moves = ", ".join(f"@{m['alias']} {('v' + m['from']) if m['from'] else '-'} -> "
                          f"{('v' + m['to']) if m['to'] else '-'}" for m in e["moves"])
        typer.echo(f"{e['at']} {e['kind']:<9} {moves}  by {e['actor']}{' (' + e['dag_run'] + ')' if e['dag_run'] else ''}"
                   f": {e['reason']}")


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Champion, challenger and previous with their metrics and when/why they moved."""
    from ctloop.registry.mlflow_registry import configure_mlflow, registry_status

    settings, params, _ = _runtime()
    st = registry_status(configure_mlflow(settings), params.training.registered_model)
    if as_json:
        _emit(st, True, "")
        return
    from rich.console import Console

    from ctloop.status_view import status_table

    Console(width=None if Console().is_terminal else 150).print(status_table(st))


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
    import pyarrow.parquet as pq

    from ctloop.monitoring.drift import drift_between_files, parquet_files
    from ctloop.monitoring.monitor import drift_policy

    _, params, _ = _runtime()
    names = pq.ParquetFile(parquet_files(reference)[0]).schema_arrow.names
    wanted = columns.split(",") if columns else ([c for c in params.dataset.features if c in names] or names)
    result = drift_between_files(reference, current, params.dataset, drift_policy(params), wanted, report)
    body = result.to_dict()
    body.pop("share_threshold")
    _emit(body, as_json, f"dataset drift: {result.dataset_drift} ({result.drift_share:.0%} of "
                         f"{len(result.columns)} columns: {', '.join(result.drifted_columns) or 'none'})")
    if fail_on_drift and result.dataset_drift:
        raise typer.Exit(1)


@app.command()
def monitor(
    day: Annotated[str, typer.Option("--date", help="the window, YYYY-MM-DD")],
    as_json: JsonFlag = False,
) -> None:
    """Assess one monitoring window outside Airflow (drift, labeled quality, the policy's decision)."""
    from ctloop.monitoring.monitor import assess_window

    settings, params, lake = _runtime()
    summary = assess_window(lake, params, settings, date.fromisoformat(day))
    d = summary["decision"]
    _emit(summary, as_json, f"{day}: {d['status']} (trigger: {d['trigger']})\n  - " + "\n  - ".join(d["reasons"]))


@app.command()
def lineage(
    version: Annotated[str, typer.Argument(help="model version")],
    as_json: JsonFlag = False,
) -> None:
    """The chain: version <- run <- training set (DVC) <- curated partitions <- raw batches <- trigger.
    Exit 1 when a link no longer holds (a raw batch changed or is gone, a data version left the cache)."""
    from ctloop.lineage import resolve_lineage

    settings, params, lake = _runtime()
    chain = resolve_lineage(settings, params, lake, version)
    if as_json:
        _emit(chain.to_dict(), True, "")
    else:
        from rich.console import Console

        from ctloop.status_view import lineage_tree

        Console(width=None if Console().is_terminal else 150).print(lineage_tree(chain))
    if not chain.complete:
        raise typer.Exit(1)


@app.command()
def reproduce(
    version: Annotated[str, typer.Argument(help="model version")],
    tolerance: Annotated[float, typer.Option(help="largest metric difference still counted as reproduced")] = 0.0,
    as_json: JsonFlag = False,
) -> None:
    """Pull VERSION's training set back with DVC, retrain with its recorded params and compare with the
    registered model. Exit 1 (with the reasons) when the metrics differ."""
    from ctloop.errors import NotReproduced
    from ctloop.lineage import Reproduction
    from ctloop.lineage import reproduce as reproduce_version

    settings, params, lake = _runtime()
    try:
        result = reproduce_version(settings, params, lake, version, tolerance)
    except NotReproduced as e:
        if as_json and isinstance(e.result, Reproduction):
            _emit(e.result.to_dict(), True, "")
        raise
    _emit(result.to_dict(), as_json,
          f"v{version} reproduced from data version {result.data_version}: metrics identical "
          f"({', '.join(f'{k} {v:.6f}' for k, v in result.reproduced.items())}), max score difference "
          f"{result.max_score_difference:g}")


@audit_app.command("verify")
def audit_verify(as_json: JsonFlag = False) -> None:
    """Check the hash chain; exit 1 and name the first bad line when an entry was edited, removed or reordered."""
    from ctloop.audit import audit_log

    settings, _, _ = _runtime()
    log = audit_log(settings)
    result = log.verify()
    _emit(result.to_dict() | {"log": str(log.path)}, as_json,
          f"{log.path}: {result.entries} entries, chain intact" if result.ok else
          f"{log.path}:{result.bad_line}: {result.problem}")
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("show")
def audit_show(
    since: Annotated[str | None, typer.Option(help="only entries at or after this time (ISO 8601, UTC if naive)")] = None,
    kind: Annotated[str | None, typer.Option(help="only this kind of decision")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The decisions, oldest first."""
    from datetime import datetime

    from ctloop.audit import audit_log, entries_since

    settings, _, _ = _runtime()
    try:
        floor = datetime.fromisoformat(since) if since else None
    except ValueError as e:
        raise typer.BadParameter(f"--since {since!r}: expected an ISO 8601 time such as 2026-01-31T12:00") from e
    entries = [e for e in entries_since(audit_log(settings).entries(), floor) if kind is None or e["kind"] == kind]
    if as_json:
        _emit({"entries": entries}, True, "")
        return
    for entry in entries:
        reasons = f" - {'; '.join(entry['reasons'])}" if entry["reasons"] else ""
        typer.echo(f"#{entry['seq']} {entry['at'][:19]} {entry['kind']:<13} {entry['outcome']:<10} "
                   f"{entry['subject']}{reasons}"[:400])


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
    days: Annotated[int, typer.Option(help="days to backfill before the first retrain")] = 14,
    extra_days: Annotated[int, typer.Option("--extra-days", help="days ingested before the second retrain")] = 7,
    scenario: Annotated[str, typer.Option(help="what happens in production: covariate_shift, concept_shift, "
                                          "label_shift, upstream_bug, new_category, stable, seasonal")] = "covariate_shift",
    production_days: Annotated[int, typer.Option("--production-days", help="days of monitored traffic")] = 14,
) -> None:
    """Run the main job on the embedded default through the real Airflow scheduler and print what happened."""
    from ctloop.data.simulator import SCENARIOS
    from ctloop.demo import run_demo

    if scenario not in SCENARIOS or scenario == "schema_break":
        raise typer.BadParameter(f"unknown scenario {scenario!r}")
    run_demo(days=days, extra_days=extra_days, scenario=scenario, production_days=production_days)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
) -> None:
    """Serve @champion over HTTP (POST /predict; /health /ready /model /metrics; PUT /routes), with the
    canary and shadow routes of params.yaml `serving` and the routes file. SIGTERM drains and flushes."""
    from ctloop.serving.app import serve as run

    settings, params, _ = _runtime()
    run(settings, params, host, port)


@app.command()
def routes(
    canary: Annotated[float | None, typer.Option(help="share of request keys sent to the canary (0 stops it)")] = None,
    canary_alias: Annotated[str | None, typer.Option("--canary-alias", help="challenger or candidate")] = None,
    shadow: Annotated[bool | None, typer.Option("--shadow/--no-shadow", help="shadow-score every request")] = None,
    shadow_alias: Annotated[str | None, typer.Option("--shadow-alias", help="challenger or candidate")] = None,
    url: Annotated[str | None, typer.Option(help="apply through a running server's PUT /routes at once")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show or change the serving routes at run time (servers pick a change up within serving.poll_seconds)."""
    from ctloop.serving.routing import read_routes, routes_path, write_routes

    settings, params, _ = _runtime()
    changes = {k: v for k, v in {"canary_fraction": canary, "canary_alias": canary_alias, "shadow": shadow,
                                 "shadow_alias": shadow_alias}.items() if v is not None}
    if url:
        from ctloop.serving.client import http_client

        token = settings.serving_token.get_secret_value() if settings.serving_token else None
        with http_client(url, token) as client:
            r = client.put("/routes", json=changes) if changes else client.get("/model")
        if r.status_code != 200:
            raise ConfigError(f"{url}: {r.status_code} {r.text[:300]}")
        current = r.json()["routes"]
    else:
        try:
            routes_now = read_routes(settings.home, params.serving)
            if changes:
                routes_now = routes_now.changed("ctloop routes", **changes)
                write_routes(settings.home, routes_now)
        except ValueError as e:
            raise ConfigError(str(e)) from e
        current = routes_now.to_dict()
    text = (f"canary: {current['canary_fraction']:.0%} to @{current['canary_alias']}"
            + (f" (stopped {current['stopped']['at']}: {'; '.join(current['stopped']['reasons'])})"
               if current.get("stopped") else "")
            + f"\nshadow: {'@' + current['shadow_alias'] if current['shadow'] else 'off'}"
            + f"\nfile:   {routes_path(settings.home)}")
    _emit(current, as_json, text)


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
