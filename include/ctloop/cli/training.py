"""``ctloop`` verbs: training sets, training, evaluation, the gate and the golden set."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from ctloop.cli.app import JsonFlag, app, emit, golden_app, parse_day, runtime
from ctloop.core.errors import ConfigError, CtloopError

DataDir = Annotated[Path, typer.Option("--data-dir", help="training-set directory written by `ctloop prepare`")]


RunDir = Annotated[Path | None, typer.Option("--run-dir", help="where train.json, evaluation.json and "
                                             "metrics.json go (default: the data dir)")]


def _flat_metrics(evaluation_file: Path) -> dict[str, Any]:
    """The evaluation's headline numbers by role, the shape ``dvc metrics show`` tabulates."""
    record = json.loads(evaluation_file.read_text())
    return {role: {k: round(v, 6) for k, v in record[role]["metrics"].items()}
            for role in ("challenger", "champion") if record.get(role)} | {"test_rows": record["test_rows"]}


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
    from ctloop.flows.retrain import describe_trigger, validate_training_set
    from ctloop.flows.retrain import prepare as prepare_set

    settings, params, lake = runtime()
    prepared = prepare_set(params, lake, parse_day(as_of, "--as-of") if as_of is not None else None, window_days, out_dir,
                       describe_trigger(None, reason, None))
    info = prepared.to_dict() | {"validation": validate_training_set(params, settings, out_dir).to_dict()}
    w = info["window"]
    emit(info, as_json, f"training set [{w['start']}, {w['end']}): {info['train_rows']} train rows "
                         f"({len(w['train_days'])} days), {info['test_rows']} test rows ({', '.join(w['test_days'])}) -> {out_dir}")


def parse_overrides(pairs: list[str] | None) -> dict[str, Any] | None:
    """``--hp n_estimators=200 --hp max_depth=null`` -> {"n_estimators": 200, "max_depth": None} (YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--hp {pair!r}: expected NAME=VALUE")
        try:
            out[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"--hp {name.strip()}: {value!r} is not a YAML scalar") from e
    return out or None


@app.command()
def train(
    data_dir: DataDir,
    model: Annotated[str | None, typer.Option(
        help="logistic_regression | hist_gradient_boosting | custom (training.estimator / training.pipeline)")] = None,
    hp: Annotated[list[str] | None, typer.Option(
        "--hp", help="hyperparameter override NAME=VALUE (scikit-learn set_params names; repeatable)")] = None,
    run_dir: RunDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Train the challenger, log it to MLflow, register a new version with alias `challenger`."""
    from ctloop.flows.retrain import train as train_model

    settings, params, _ = runtime()
    result = train_model(params, settings, data_dir, model=model, hyperparameters=parse_overrides(hp)).to_dict()
    out = run_dir or data_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(json.dumps(result, indent=1))
    emit(result, as_json, f"challenger v{result['version']} ({result['model']}), run {result['run_id']}; "
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
    from ctloop.flows.retrain import evaluate as evaluate_models

    settings, params, _ = runtime()
    out = run_dir or data_dir
    trained = json.loads((out / "train.json").read_text()) if (out / "train.json").exists() else {}
    version = version or trained.get("version")
    if version is None:
        raise CtloopError(f"{out}: no train.json; pass --version")
    run_id = trained.get("run_id") if trained.get("version") == version else None
    from ctloop.core.params import SUITES

    wanted: list[str] = (list(params.evaluation.suites) if suites is None else list(SUITES) if suites == "all"
              else [] if suites == "none" else [x.strip() for x in suites.split(",")])
    unknown = [x for x in wanted if x not in SUITES]
    if unknown:
        raise typer.BadParameter(f"--suites: unknown {', '.join(unknown)}; expected {', '.join(SUITES)}")
    result = evaluate_models(params, settings, data_dir, version, run_id, out_dir=out, suites=wanted).to_dict()
    (out / "metrics.json").write_text(json.dumps(_flat_metrics(out / "evaluation.json"), indent=1))
    if plots is not None:
        from ctloop.evaluation.curves import write_curves

        write_curves(params, settings, data_dir, version, plots)
    emit(result, as_json, f"challenger v{version}: {result['metrics']}; champion: "
                           f"{'v' + result['champion'] if result['champion'] else 'none yet'}"
                           + "".join(f"\n  {line}" for line in result["suites"].values()))


@app.command()
def gate(
    data_dir: DataDir,
    run_dir: RunDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Judge the evaluation with the gate; writes the decision to MLflow. Exit 1 when rejected."""
    from ctloop.flows.retrain import gate as run_gate

    settings, params, _ = runtime()
    decision = run_gate(params, settings, (run_dir or data_dir) / "evaluation.json")
    verdict = "PROMOTE" if decision.passed else "REJECT"
    emit(decision.to_dict(), as_json, f"gate: {verdict} v{decision.challenger}\n  - " + "\n  - ".join(decision.reasons))
    if not decision.passed:
        raise typer.Exit(1)


@golden_app.command("add")
def golden_add(
    request_ids: Annotated[list[str], typer.Argument(help="request ids from the prediction log")],
    from_log: Annotated[bool, typer.Option("--from-log", help="take the requests from the prediction log")] = True,
    label: Annotated[float, typer.Option(help="the correct decision (the dataset's classes) or value (regression)")] = 1,
    note: Annotated[str, typer.Option(help="why this case matters (reviewed with the diff)")] = "",
    days: Annotated[int, typer.Option(help="how many days of the log to search, back from --until")] = 30,
    until: Annotated[str | None, typer.Option(help="last log day to search (YYYY-MM-DD; default: newest)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Feed real production failures back into the golden set (appends; review and commit the diff)."""
    from datetime import timedelta

    from ctloop.evaluation.golden import add_from_log, append_cases

    settings, params, lake = runtime()
    if params.dataset.is_classifier and label not in params.dataset.classes:
        raise typer.BadParameter(f"--label {label}: expected one of {params.dataset.classes}")
    if not note.strip():
        raise typer.BadParameter("--note: say why this case belongs in the golden set")
    base = lake.root / "predictions"
    logged = sorted(date.fromisoformat(p.name[3:]) for p in base.glob("dt=*")) if base.exists() else []
    last = parse_day(until, "--until") if until is not None else (logged[-1] if logged else date.today())
    search = [last - timedelta(days=i) for i in range(days)]
    cases = add_from_log(lake, params.dataset, request_ids, label, note, search)
    path = settings.project_dir / params.evaluation.golden.path
    append_cases(path, cases)
    emit({"added": [c["case_id"] for c in cases], "golden_set": str(path)}, as_json,
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
    from ctloop.estimators.scoring import score_rows
    from ctloop.evaluation.golden import append_cases, seed_cases
    from ctloop.registry.mlflow_registry import configure_mlflow, require_champion

    settings, params, _ = runtime()
    name = params.training.registered_model
    version = require_champion(configure_mlflow(settings), name)
    reference = read_batch(source)
    scores = score_rows(mlflow.sklearn.load_model(f"models:/{name}/{version}"), reference, params.dataset).scores
    cases = seed_cases(reference, scores, params.dataset, per_class, f"{source.name} scored by {name} v{version}",
                       tolerance=params.evaluation.golden.tolerance)
    path = settings.project_dir / params.evaluation.golden.path
    append_cases(path, cases)
    emit({"added": len(cases), "golden_set": str(path)}, as_json, f"seeded {len(cases)} cases into {path}")
