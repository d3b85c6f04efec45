"""One monitoring window: collect the window's predictions and the labels that arrived, measure data and
prediction drift against the champion's reference sample (stored with its version at training time),
measure the champion's labeled quality one window late, decide with the policy, and write the Evidently
HTML report, a JSON summary and the headline figures to MLflow."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.core.audit import record as audit_record
from ctloop.core.errors import RegistryError
from ctloop.data.predictions import labels_arrived, log_rows, prediction_files, read_predictions
from ctloop.decisions.drift import MonitorPolicy, WindowEvidence, decide
from ctloop.monitoring.drift import DriftPolicy, column_kinds, detect_drift, sample_parquet

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.core.params import Params
    from ctloop.core.settings import Settings
    from ctloop.data.store import Lake

SCORE = "score"


def report_dir(lake: Lake, day: date) -> Path:
    return lake.root / "reports" / "monitor" / f"dt={day.isoformat()}"


def monitor_policy(params: Params) -> MonitorPolicy:
    m = params.monitoring
    return MonitorPolicy(min_rows=m.min_rows, drift_share=m.drift_share, prediction_drift=m.prediction_drift,
                         max_quality_drop=m.max_quality_drop, min_labeled_rows=m.min_labeled_rows,
                         cooldown_hours=m.cooldown_hours, min_drift_days=m.min_drift_days,
                         max_unseen_share=m.max_unseen_share, max_label_shift=m.max_label_shift)


def drift_policy(params: Params) -> DriftPolicy:
    m = params.monitoring
    return DriftPolicy(drift_share=m.drift_share, sample_rows=m.sample_rows,
                       per_column_method={c: r.method for c, r in m.per_column.items() if r.method},
                       per_column_threshold={c: r.threshold for c, r in m.per_column.items() if r.threshold is not None})


def champion_reference(settings: Settings, params: Params) -> dict[str, Any]:
    """The champion's version, reference sample (training rows with the model's scores) and test quality."""
    import pandas as pd

    from ctloop.registry.mlflow_registry import configure_mlflow, require_champion

    client = configure_mlflow(settings)
    name = params.training.registered_model
    version = require_champion(client, name)
    run_id = client.get_model_version(name, version).run_id
    if run_id is None:
        raise RegistryError(f"{name} v{version} was registered without an MLflow run: it has no reference "
                            "profile to monitor against (register champions through ctloop_retrain)")
    cache = settings.home / "cache" / "reference" / f"{name}-v{version}.parquet"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        local = client.download_artifacts(run_id, "reference/sample.parquet", str(cache.parent))
        Path(local).rename(cache)
    metrics = client.get_run(run_id).data.metrics
    sample = pd.read_parquet(cache).rename(columns={"prediction_score": SCORE})
    target = params.dataset.target
    return {"version": version, "run_id": run_id, "sample": sample,
            "quality": metrics.get(params.monitoring.quality_metric),
            "label_share": float(sample[target].mean()) if target in sample.columns else None}


def unseen_shares(reference: pd.DataFrame, current: pd.DataFrame, categorical: list[str]) -> dict[str, float]:
    """Share of the window's rows whose categorical value never appears in the reference sample."""
    out = {}
    for c in categorical:
        seen = set(reference[c].dropna().astype(str))
        values = current[c].dropna().astype(str)
        out[c] = float((~values.isin(seen)).mean()) if len(values) else 0.0
    return out


def quality_of(metric: str, joined: pd.DataFrame) -> float:
    """The champion's quality on labeled requests, with Evidently's classification metrics."""
    import os

    os.environ.setdefault("DO_NOT_TRACK", "true")
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.metrics import Accuracy, F1Score, RocAuc

    frame = joined[["label", SCORE, "prediction"]].astype({"label": "int64", "prediction": "int64"})
    definition = DataDefinition(classification=[BinaryClassification(
        target="label", prediction_probas=SCORE, prediction_labels="prediction")])
    evidently_metric = {"roc_auc": RocAuc, "f1_score": F1Score, "accuracy_score": Accuracy}[metric]()
    snapshot = Report([evidently_metric]).run(Dataset.from_pandas(frame, data_definition=definition), None)
    return float(snapshot.dict()["metrics"][0]["value"])


def labeled_quality(lake: Lake, params: Params, window: date, champion_version: str) -> dict[str, Any]:
    """The champion's quality on the newest earlier window whose labels have arrived (concept drift runs
    one window late). Only predictions served by this champion count."""
    labels = labels_arrived(lake, window)
    if labels.empty:
        return {"quality": None, "labeled_rows": 0, "quality_window": None, "label_share": None}
    for back in range(1, 8):
        day = window - timedelta(days=back)
        preds = read_predictions(lake, day, params.dataset)
        preds = preds[(preds["model_version"].astype(str) == champion_version) & (preds["route"] != "shadow")]
        joined = preds.merge(labels, on="request_id")
        if len(joined) < params.monitoring.min_labeled_rows or joined["label"].nunique() < 2:
            continue
        value = quality_of(params.monitoring.quality_metric, joined)
        return {"quality": value, "labeled_rows": len(joined), "quality_window": day,
                "label_share": float(joined["label"].astype(int).mean())}
    return {"quality": None, "labeled_rows": 0, "quality_window": None, "label_share": None}


def drift_history(lake: Lake, before: date, days: int = 30) -> tuple[list[date], date | None]:
    """Earlier windows whose evidence showed drift, and the window of the last trigger."""
    drifted, last_trigger = [], None
    for i in range(1, days + 1):
        d = before - timedelta(days=i)
        f = report_dir(lake, d) / "summary.json"
        if not f.exists():
            continue
        s = json.loads(f.read_text())
        if s["decision"]["status"] in ("drift", "suppressed"):
            drifted.append(d)
        if s["decision"]["trigger"] and last_trigger is None:
            last_trigger = d
    return drifted, last_trigger


def collect_window(lake: Lake, params: Params, window: date) -> dict[str, Any]:
    """Check the window's partition from Parquet metadata only: rows and files (a corrupt or schema-changed
    file raises, naming it)."""
    files = prediction_files(lake, window)
    rows = log_rows(files, params.dataset)
    labels = labels_arrived(lake, window)
    return {"window": window.isoformat(), "rows": rows, "partition_exists": bool(files),
            "files": len(files), "labels_arrived": len(labels)}


def measure_drift(lake: Lake, params: Params, settings: Settings, window: date) -> dict[str, Any]:
    """Data drift of every feature and prediction drift against the champion's reference sample."""
    contract = params.dataset
    out = report_dir(lake, window)
    out.mkdir(parents=True, exist_ok=True)
    champion = champion_reference(settings, params)
    rows = log_rows(prediction_files(lake, window), contract)
    result: dict[str, Any] = {"champion": champion["version"], "rows": rows, "drift": None}
    if rows < params.monitoring.min_rows:
        return result
    # a bounded uniform sample read row group by row group: memory stays flat however big the window
    sample, _ = sample_parquet(lake.partition("predictions", window), [*contract.features, SCORE, "route"],
                               params.monitoring.sample_rows)
    # the champion's traffic only: shadow rows repeat requests, canary scores come from another model
    sample = sample[sample["route"] == "champion"].drop(columns="route").reset_index(drop=True)
    numerical, categorical = column_kinds(sample, contract, contract.features)
    drift = detect_drift(champion["sample"], sample, [*numerical, SCORE], categorical, drift_policy(params),
                         rows={"reference": len(champion["sample"]), "current": rows},
                         report=out / "report.html")
    features = {c: d for c, d in drift.columns.items() if c != SCORE}
    drifted = sorted(c for c, d in features.items() if d.drift)
    return result | {
        "drift": drift.to_dict(), "report": str(out / "report.html"),
        "drift_share": len(drifted) / max(len(features), 1), "drifted_columns": drifted,
        "prediction_drift": drift.columns[SCORE].drift, "prediction_drift_score": drift.columns[SCORE].score,
        "unseen": unseen_shares(champion["sample"], sample, categorical),
    }


def measure_quality(lake: Lake, params: Params, settings: Settings, window: date) -> dict[str, Any]:
    champion = champion_reference(settings, params)
    quality = labeled_quality(lake, params, window, champion["version"])
    return quality | {"quality_window": quality["quality_window"].isoformat() if quality["quality_window"] else None,
                      "reference_quality": champion["quality"], "reference_label_share": champion["label_share"]}


def decide_window(lake: Lake, params: Params, settings: Settings, window: date, collected: dict[str, Any],
                  drift: dict[str, Any], quality: dict[str, Any], retrains_in_flight: int = 0) -> dict[str, Any]:
    """The policy's decision; writes summary.json beside the report and logs the headline figures."""
    evidence = WindowEvidence(
        window=window, rows=collected["rows"], partition_exists=collected["partition_exists"],
        drift_share=drift.get("drift_share"), drifted_columns=tuple(drift.get("drifted_columns", ())),
        prediction_drift=drift.get("prediction_drift"), prediction_drift_score=drift.get("prediction_drift_score"),
        quality=quality["quality"], labeled_rows=quality["labeled_rows"],
        quality_window=date.fromisoformat(quality["quality_window"]) if quality["quality_window"] else None,
        reference_quality=quality["reference_quality"], unseen=drift.get("unseen", {}),
        label_share=quality.get("label_share"), reference_label_share=quality.get("reference_label_share"),
    )
    history, last_trigger = drift_history(lake, window)
    decision = decide(evidence, monitor_policy(params), last_trigger, retrains_in_flight, history)
    summary = {
        "window": window.isoformat(), "rows": collected["rows"], "champion": drift["champion"],
        **{k: drift.get(k) for k in ("drift_share", "drifted_columns", "prediction_drift", "unseen", "report")},
        **{k: quality.get(k) for k in ("quality", "labeled_rows", "quality_window", "reference_quality",
                                       "label_share", "reference_label_share")},
        "drift": drift.get("drift"),
        "decision": decision.to_dict(),
    }
    out = report_dir(lake, window)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    if decision.trigger or decision.status == "suppressed":
        audit_record("drift_trigger", f"window {window}", "triggered" if decision.trigger else "suppressed",
               decision.reasons, {"drifted_columns": list(decision.drifted_columns), "report": summary["report"],
                                  "champion": summary["champion"]}, settings=settings)
    log_headlines(settings, params, summary)
    return summary


def assess_window(lake: Lake, params: Params, settings: Settings, window: date,
                  retrains_in_flight: int = 0) -> dict[str, Any]:
    """The whole window in one process (``ctloop monitor``); the DAG runs the steps as tasks."""
    collected = collect_window(lake, params, window)
    return decide_window(lake, params, settings, window, collected, measure_drift(lake, params, settings, window),
                         measure_quality(lake, params, settings, window), retrains_in_flight)


def log_headlines(settings: Settings, params: Params, summary: dict[str, Any]) -> None:
    """One MLflow run per window in the monitoring experiment, so the trend can be plotted."""
    import mlflow

    from ctloop.registry.mlflow_registry import configure_mlflow, ensure_experiment

    client = configure_mlflow(settings)
    exp = ensure_experiment(client, params.monitoring.experiment, settings)
    metrics = {"rows": float(summary["rows"]), "labeled_rows": float(summary["labeled_rows"]),
               "triggered": float(summary["decision"]["trigger"])}
    if summary["drift_share"] is not None:
        metrics |= {"drift_share": float(summary["drift_share"]),
                    "drifted_columns": float(len(summary["drifted_columns"])),
                    "prediction_drift": float(bool(summary["prediction_drift"]))}
    if summary["quality"] is not None:
        metrics["quality"] = float(summary["quality"])
    with mlflow.start_run(experiment_id=exp, run_name=f"monitor-{summary['window']}"):
        mlflow.set_tags({"ctloop.window": summary["window"], "ctloop.champion": summary["champion"],
                         "ctloop.status": summary["decision"]["status"]})
        mlflow.log_metrics(metrics)
    # the same headlines as gauges for Grafana (drift share and quality per window, champion over time)
    from ctloop.core.metrics import emit_gauges

    champion = summary["champion"]
    emit_gauges("monitor", {**metrics, "champion_version": int(champion) if str(champion).isdigit() else None},
                {"model": params.training.registered_model})


def drift_event_extra(summary: dict[str, Any]) -> dict[str, Any]:
    d = summary["decision"]
    return {"reasons": d["reasons"], "drifted_columns": d["drifted_columns"], "window": summary["window"],
            "report": summary["report"], "recommended_window_days": d["recommended_window_days"],
            "estimated_drift_start": d["estimated_drift_start"], "champion": summary["champion"],
            "as_of": (date.fromisoformat(summary["window"]) + timedelta(days=1)).isoformat()}


