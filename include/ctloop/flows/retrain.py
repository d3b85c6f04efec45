"""The retraining flow, one function per task of ``<model>__retrain`` (and per ``ctloop`` verb):
build the training set -> validate it -> train the challenger -> evaluate against the champion ->
gate. Each returns a record (serialised once, at the edge: XCom, ``--json``); the promotion that may
follow is :mod:`ctloop.flows.promotion`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from ctloop.core.audit import record as audit_record
from ctloop.core.errors import ValidationFailed
from ctloop.core.params import Params
from ctloop.core.settings import Settings
from ctloop.data.store import Lake
from ctloop.decisions.gate import GateDecision, decide
from ctloop.evaluation.records import ModelEvaluation
from ctloop.registry.mlflow_registry import (
    CHAMPION,
    alias_version,
    configure_mlflow,
)
from ctloop.training.train import TrainResult


@dataclass(frozen=True)
class TrainingSetBuilt:
    """A training set written (and, inside the lake, versioned with DVC) for one window."""

    dir: str
    window: dict[str, Any]
    train_rows: int
    test_rows: int
    trigger: dict[str, Any]
    data_version: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainingSetChecked:
    suite: str
    rows: int
    success: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainedVersion(TrainResult):
    """The challenger trained on a training set: its run and registered version (:class:`TrainResult`), the
    training set it came from and that set's DVC version."""

    data_dir: str = ""
    training_set_dvc_md5: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Evaluated:
    """Challenger and champion on the same test set, with the suites' verdicts; the whole record is the
    ``evaluation`` file the gate reads."""

    evaluation: str
    challenger: str
    champion: str | None
    test_rows: int
    metrics: dict[str, float]
    suites: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_trigger(run_type: str | None, reason: str | None, asset_extras: list[dict[str, Any]] | None,
                     dag_id: str | None = None, run_id: str | None = None) -> dict[str, Any]:
    """How a run started, as recorded on the MLflow run and model version."""
    extras = [e for e in (asset_extras or []) if e]
    text: str | None
    if run_type == "asset_triggered" or extras:
        reasons = [r for e in extras for r in e.get("reasons", [])]
        kind, text = "drift", "; ".join(reasons) or "drift asset event"
    elif run_type == "scheduled":
        kind, text = "schedule", reason or "scheduled retrain"
    elif run_type in ("manual", "backfill"):
        kind, text = "manual", reason
    else:
        kind, text = "cli", reason or "ctloop CLI"
    return {"kind": kind, "reason": text, "dag_id": dag_id, "run_id": run_id,
            "details": extras[0] if extras else None}


def training_set_dir(lake: Lake, key: str) -> Path:
    return lake.root / "training_sets" / re.sub(r"[^A-Za-z0-9_.=-]+", "_", key)


def prepare(params: Params, lake: Lake, as_of: date | None, window_days: int | None, out_dir: Path,
            trigger: dict[str, Any]) -> TrainingSetBuilt:
    from ctloop.data.training_set import build_training_set, latest_as_of, write_training_set
    from ctloop.data.versioning import LakeVersions
    from ctloop.flows.lineage import training_sources

    as_of = as_of or latest_as_of(lake.curated_days(), date.max)
    train, test, window = build_training_set(lake, params, as_of, window_days)
    sources = training_sources(lake, [*window.train_days, *window.test_days])
    info = write_training_set(out_dir, train, test, window, {"trigger": trigger, "sources": sources})
    data_version = None
    if out_dir.resolve().is_relative_to(lake.root.resolve()):
        # the pipeline's training sets live in the lake and are versioned there (dvc add + push)
        version = LakeVersions.for_lake(lake.root).track([out_dir])[0]
        data_version = {"md5": version.md5, "files": version.files}
    return TrainingSetBuilt(str(out_dir), info["window"], info["train_rows"], info["test_rows"], trigger, data_version)


def validate_training_set(params: Params, settings: Settings, data_dir: Path) -> TrainingSetChecked:
    from ctloop.data.training_set import read_training_set
    from ctloop.validation.context import open_context
    from ctloop.validation.run import validate_frame

    train, _, info = read_training_set(data_dir)
    report = validate_frame(train, params, open_context(settings), suite_name=params.training.suite,
                            source=str(data_dir / "train.parquet"))
    audit_record("validation", f"training set {info['window']['start']}..{info['window']['end']}",
           "passed" if report.success else "failed", [f.describe() for f in report.failures],
           {"suite": report.suite, "rows": report.row_count, "data_dir": str(data_dir)}, settings=settings)
    if not report.success:
        raise ValidationFailed(f"training set {info['window']['start']}..{info['window']['end']}: {report.summary()}",
                               report.to_dict()["failed_expectations"])
    return TrainingSetChecked(report.suite, report.row_count)


def train(params: Params, settings: Settings, data_dir: Path, model: str | None = None,
          hyperparameters: dict[str, Any] | None = None) -> TrainedVersion:
    from ctloop.data.training_set import read_training_set
    from ctloop.flows.lineage import record_lineage
    from ctloop.flows.monitor import calibrate_reference
    from ctloop.registry.mlflow_registry import configure_mlflow
    from ctloop.training.train import train_challenger

    train_df, test_df, info = read_training_set(data_dir)
    result = train_challenger(train_df, test_df, info["window"], params, settings, info.get("trigger", {}),
                              model=model, hyperparameters=hyperparameters)
    # the drift thresholds this version will be monitored with, learned from its own reference sample
    calibrate_reference(settings, params, result.run_id)
    lineage = record_lineage(settings, params, Lake(settings.lake_root), configure_mlflow(settings), result.run_id,
                             result.version, data_dir, info, result.config or {})
    return TrainedVersion(**result.to_dict(), data_dir=str(data_dir),
                          training_set_dvc_md5=lineage.get("ctloop.lineage.training_set_dvc_md5"))


def evaluate(params: Params, settings: Settings, data_dir: Path, challenger_version: str,
             challenger_run_id: str | None = None, out_dir: Path | None = None,
             suites: list[str] | None = None) -> Evaluated:
    """Evaluate the challenger and the current champion on the same test set, then run the evaluation
    suites (``evaluation.suites`` unless ``suites`` says otherwise) on the challenger."""
    from ctloop.data.training_set import read_training_set
    from ctloop.evaluation.evaluate import evaluate_version

    client = configure_mlflow(settings)
    name = params.training.registered_model
    _, test, info = read_training_set(data_dir)
    challenger = evaluate_version(f"models:/{name}/{challenger_version}", challenger_version, challenger_run_id,
                                  test, params, settings, role="challenger")
    champion_version = alias_version(client, name, CHAMPION)
    champion = None
    if champion_version is not None and champion_version != challenger_version:
        champion = evaluate_version(f"models:/{name}/{champion_version}", champion_version, None, test, params,
                                    settings, role="champion")
    results = run_challenger_suites(params, settings, test, info, challenger_version,
                                    champion.version if champion else None, challenger.metrics,
                                    champion.metrics if champion else None, challenger_run_id, suites)
    record = {
        "window": info["window"], "test_rows": len(test),
        "challenger": challenger.__dict__, "champion": champion.__dict__ if champion else None,
        "suites": results,
    }
    out = out_dir or data_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(record, indent=1, default=str))
    return Evaluated(str(out / "evaluation.json"), challenger_version, champion_version if champion else None,
                     len(test), {k: round(v, 4) for k, v in challenger.metrics.items()},
                     {r["suite"]: r["summary"] for r in results})


def run_challenger_suites(params: Params, settings: Settings, test: Any, info: dict[str, Any], version: str,
                          champion_version: str | None, metrics: dict[str, float],
                          champion_metrics: dict[str, float] | None, run_id: str | None,
                          suites: list[str] | None) -> list[dict[str, Any]]:
    """The suites on the challenger; every figure to its MLflow run, every result as an artifact."""
    import tempfile
    from datetime import timedelta

    import mlflow

    from ctloop.data.predictions import labels_arrived, prediction_files
    from ctloop.evaluation.suites import run_suites

    wanted: list[str] = list(params.evaluation.suites) if suites is None else suites
    if not wanted:
        return []
    name = params.training.registered_model
    challenger_model = mlflow.sklearn.load_model(f"models:/{name}/{version}")
    champion_model = mlflow.sklearn.load_model(f"models:/{name}/{champion_version}") if champion_version else None
    lake = Lake(settings.lake_root)
    as_of = date.fromisoformat(info["window"]["end"])
    days = [as_of - timedelta(days=i + 1) for i in range(-(-params.evaluation.shadow.hours // 24))]
    files = [f for d in days for f in prediction_files(lake, d)]
    logged = labels = None
    if files and "shadow" in wanted:
        import pandas as pd

        logged = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        labels = labels_arrived(lake, as_of, since=min(days))
    keys: tuple[str, ...] = ("brier_score", "ece")
    calibration: dict[str, float] = {k: metrics[k] for k in keys if k in metrics}
    theirs: dict[str, float] | None = (
        {k: champion_metrics[k] for k in keys if k in champion_metrics} if champion_metrics else None)
    results = [r.to_dict() for r in run_suites(challenger_model, champion_model, test, params, settings.project_dir,
                                               calibration, theirs, logged, labels, wanted)]
    if run_id:
        client = configure_mlflow(settings)
        client.log_batch(run_id, metrics=_metric_entities(
            {f"suite.{k}": v for r in results for k, v in r["metrics"].items()}
            | {f"suite.{r['suite']}.passed": float(r["passed"]) for r in results}))
        with tempfile.TemporaryDirectory() as tmp:
            for r in results:
                (Path(tmp) / f"{r['suite']}.json").write_text(json.dumps(r, indent=1, default=str))
            client.log_artifacts(run_id, tmp, artifact_path="suites")
    return results


def _metric_entities(values: dict[str, float]) -> list[Any]:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, 0) for k, v in values.items()]


def gate(params: Params, settings: Settings, evaluation_file: Path) -> GateDecision:
    """Decide, then keep the decision: whole on the challenger's MLflow run (the version's tags point at it),
    beside the evaluation, and in the audit log."""
    from ctloop.registry.mlflow_registry import store_gate_decision

    record = json.loads(evaluation_file.read_text())
    challenger = ModelEvaluation(**record["challenger"])
    champion = ModelEvaluation(**record["champion"]) if record.get("champion") else None
    decision = decide(challenger, champion, params.gate, record.get("suites"))
    client = configure_mlflow(settings)
    name = params.training.registered_model
    assert challenger.version is not None
    uri = store_gate_decision(client, name, challenger.version, decision.to_dict())
    (evaluation_file.parent / "gate_decision.json").write_text(decision.to_json())
    audit_record("gate", f"{name} v{challenger.version}", "passed" if decision.passed else "rejected", decision.reasons,
                 {"champion": decision.champion, "evaluation": str(evaluation_file), "decision": uri},
                 settings=settings)
    return decision
