"""One monitoring window: collect the window's predictions (Parquet footers, once) and the champion's
reference, measure data and prediction drift against the reference sample, measure the champion's
labeled quality one window late, decide with the policy, and keep the outcome: the Evidently HTML report,
``summary.json``, the headline figures in MLflow and as gauges, and the audit entry of a trigger.

Each step reads its inputs once: the footers in :func:`collect_window`, the reference sample in
:func:`measure_drift`, the labels (bounded by the window) in :func:`measure_quality`; the steps hand
each other records (:mod:`ctloop.monitoring.records`).
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.core.audit import record as audit_record
from ctloop.core.logs import library_output_to_log
from ctloop.core.task import proba_columns
from ctloop.data.predictions import CHAMPION_ROUTE, SHADOW_ROUTE, label_rows, log_rows, prediction_files
from ctloop.decisions.drift import MonitorPolicy, WindowEvidence, decide
from ctloop.monitoring.calibration import Calibration, calibrate
from ctloop.monitoring.drift import DriftPolicy, column_kinds, detect_drift, sample_parquet, unseen_shares
from ctloop.monitoring.quality import labeled_quality, window_labels
from ctloop.monitoring.records import DriftMeasurement, QualityMeasurement, WindowData, WindowSummary
from ctloop.monitoring.reference import (
    SCORE,
    champion_reference,
    load_calibration,
    read_reference_sample,
    reference_sample,
)
from ctloop.monitoring.report import annotate_report
from ctloop.monitoring.text import with_descriptors

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.core.params import DatasetSpec, Params
    from ctloop.core.settings import Settings
    from ctloop.data.store import Lake


def report_dir(lake: Lake, day: date) -> Path:
    return lake.root / "reports" / "monitor" / f"dt={day.isoformat()}"


def monitor_policy(params: Params) -> MonitorPolicy:
    m = params.monitoring
    return MonitorPolicy(min_rows=m.min_rows, drift_share=m.drift_share, prediction_drift=m.prediction_drift,
                         max_quality_drop=m.max_quality_drop, min_labeled_rows=m.min_labeled_rows,
                         cooldown_hours=m.cooldown_hours, min_drift_days=m.min_drift_days,
                         max_unseen_share=m.max_unseen_share, max_label_shift=m.max_label_shift,
                         quality_metric=m.quality_metric, task=params.dataset.task)


def drift_policy(params: Params, calibration: Calibration | None = None) -> DriftPolicy:
    """The thresholds in force: a column's own in ``monitoring.per_column`` first, then (with
    ``monitoring.thresholds: calibrated``) the champion's calibrated ones, then Evidently's."""
    m = params.monitoring
    thresholds = dict(calibration.thresholds()) if calibration is not None and m.thresholds == "calibrated" else {}
    thresholds |= {c: r.threshold for c, r in m.per_column.items() if r.threshold is not None}
    return DriftPolicy(drift_share=m.drift_share, sample_rows=m.sample_rows,
                       per_column_method={c: r.method for c, r in m.per_column.items() if r.method},
                       per_column_threshold=thresholds)


def null_shares(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], max_increase: float
                ) -> dict[str, dict[str, Any]]:
    """Each column's null share in the reference and the window, and whether it rose beyond ``max_increase``
    and beyond chance (a one-sided two-proportion z-test at 0.1%)."""
    import math

    out: dict[str, dict[str, Any]] = {}
    n1, n2 = len(reference), len(current)
    for c in columns:
        p1 = float(reference[c].isna().mean()) if n1 else 0.0
        p2 = float(current[c].isna().mean()) if n2 else 0.0
        pooled = (p1 * n1 + p2 * n2) / max(n1 + n2, 1)
        se = math.sqrt(pooled * (1 - pooled) * (1 / max(n1, 1) + 1 / max(n2, 1)))
        z = (p2 - p1) / se if se > 0 else (math.inf if p2 > p1 else 0.0)
        out[c] = {"reference": round(p1, 6), "current": round(p2, 6), "z": round(z, 2) if math.isfinite(z) else None,
                  "drift": bool(p2 - p1 >= max_increase and z > 3.09)}
    return out


def calibrate_reference(settings: Settings, params: Params, run_id: str) -> Calibration | None:
    """At training time: the drift thresholds the new version's reference sample calibrates (its days
    compared with one another), kept beside the sample as ``reference/calibration.json``."""
    import json
    import tempfile

    from ctloop.registry.mlflow_registry import configure_mlflow

    client = configure_mlflow(settings)
    with tempfile.TemporaryDirectory() as tmp:
        sample = read_reference_sample(client.download_artifacts(run_id, "reference/sample.parquet", tmp))
        contract = params.dataset
        numerical, categorical = column_kinds(sample, contract, contract.features)
        sample, _, described = with_descriptors(sample, None, contract)
        calibration = calibrate(sample, [*numerical, *described, *output_columns(contract)], categorical, contract.timestamp, drift_policy(params).per_column_threshold,
                                params.monitoring.calibration_k)
        if calibration is None:
            return None
        out = Path(tmp) / "calibration.json"
        out.write_text(json.dumps(calibration.to_dict(), indent=1))
        client.log_artifact(run_id, str(out), artifact_path="reference")
    return calibration


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


def collect_window(lake: Lake, params: Params, window: date, settings: Settings | None = None) -> WindowData:
    """The window's partition from Parquet metadata only (a corrupt or schema-changed file raises, naming
    it), and the champion it is judged against."""
    from ctloop.core.settings import get_settings

    files = prediction_files(lake, window)
    rows = log_rows(files, params.dataset)
    champion = champion_reference(settings or get_settings(), params)
    # what validation let through with a warning that day is part of the window's evidence, for a person
    manifest = lake.partition("curated", window) / "_manifest.json"
    warnings = tuple(json.loads(manifest.read_text()).get("warnings", [])) if manifest.exists() else ()
    return WindowData(window, rows, tuple(str(f) for f in files), label_rows(lake, window), champion, warnings)


def output_columns(contract: DatasetSpec) -> list[str]:
    """The model's outputs whose drift is prediction drift."""
    return proba_columns(contract.classes) if contract.task == "multiclass" else [SCORE]


def measure_drift(params: Params, data: WindowData, report: Path) -> DriftMeasurement:
    """Data drift of every feature and prediction drift against the champion's reference sample."""
    contract = params.dataset
    champion = data.champion
    if data.rows < params.monitoring.min_rows:
        return DriftMeasurement(champion.version, data.rows)
    calibration = load_calibration(champion)
    if params.monitoring.thresholds == "fixed":
        thresholds = "fixed (monitoring.thresholds)"
    elif calibration is None:
        thresholds = f"fixed (v{champion.version} has no calibration: trained before it, or too few days)"
    else:
        thresholds = f"calibrated on v{champion.version}'s reference ({len(calibration.chunks)} days, k={calibration.k:g})"
    reference = reference_sample(champion)
    # a bounded uniform sample read row group by row group: memory stays flat however big the window
    outputs = output_columns(contract)
    sample, _ = sample_parquet([Path(f) for f in data.files], [*contract.features, *outputs, "route"],
                               params.monitoring.sample_rows)
    sample, outputs = served_sample(sample, outputs)
    numerical, categorical = column_kinds(sample, contract, contract.features)
    # free text: its descriptors (length, unseen words), as Evidently judges text
    missing = null_shares(reference, sample, contract.features, params.monitoring.max_null_share_increase)
    reference, described_sample, described = with_descriptors(reference, sample, contract)
    assert described_sample is not None
    sample, numerical = described_sample, [*numerical, *described]
    report.parent.mkdir(parents=True, exist_ok=True)
    drift = detect_drift(reference, sample, numerical, categorical, drift_policy(params, calibration),
                         rows={"reference": len(reference), "current": data.rows}, report=report, outputs=outputs)
    features = {c: d for c, d in drift.columns.items() if c not in outputs}
    # prediction drift: the score (binary), the value (regression), any class's probability (multiclass)
    drifted = tuple(sorted(c for c, d in features.items() if d.drift))
    moved = max(outputs, key=lambda c: (drift.columns[c].drift, drift.columns[c].score)) if outputs else None
    return DriftMeasurement(champion.version, data.rows, drift.to_dict(), str(report),
                            len(drifted) / max(len(features), 1), drifted,
                            drift.columns[moved].drift if moved else None, drift.columns[moved].score if moved else None,
                            unseen_shares(reference, sample, categorical), thresholds, missing)


def served_sample(sample: pd.DataFrame, outputs: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The rows users were answered from, and the outputs that can be judged on them.

    Feature drift is the world's: every served request counts, whichever route answered it (during a staged
    rollout the candidate may answer most keys, or all of them on its last step). Shadow rows repeat requests
    and are left out. Prediction drift is the champion's against its own reference: a canary's or
    candidate's outputs come from another model, so they are blanked (Evidently leaves the gaps out) and, on a
    window the champion answered none of, the outputs are not judged at all."""
    served = sample[sample["route"] != SHADOW_ROUTE].reset_index(drop=True)
    on_champion = served["route"] == CHAMPION_ROUTE
    served = served.drop(columns="route")
    if not on_champion.any():
        return served.drop(columns=outputs), []
    served.loc[~on_champion, outputs] = float("nan")
    return served, outputs


def measure_quality(lake: Lake, params: Params, data: WindowData) -> QualityMeasurement:
    champion = data.champion
    quality, rows, judged, share = labeled_quality(lake, params, data.window, champion.version,
                                                   window_labels(lake, data.window), champion.label_cut,
                                                   champion.label_shares)
    return QualityMeasurement(quality, rows, judged, share, champion.quality, champion.label_share)


def decide_window(lake: Lake, params: Params, settings: Settings, data: WindowData, drift: DriftMeasurement,
                  quality: QualityMeasurement, retrains_in_flight: int = 0) -> WindowSummary:
    """The policy's decision; writes summary.json beside the report, logs the headline figures and audits
    a trigger (or a suppressed one)."""
    evidence = WindowEvidence(
        window=data.window, rows=data.rows, partition_exists=data.partition_exists,
        drift_share=drift.drift_share, drifted_columns=drift.drifted_columns,
        prediction_drift=drift.prediction_drift, prediction_drift_score=drift.prediction_drift_score,
        quality=quality.quality, labeled_rows=quality.labeled_rows, quality_window=quality.quality_window,
        reference_quality=quality.reference_quality, unseen=drift.unseen,
        label_share=quality.label_share, reference_label_share=quality.reference_label_share,
        missing=drift.missing_drifted,
    )
    history, last_trigger = drift_history(lake, data.window)
    from ctloop.flows.rollout import read_rollout

    rollout = read_rollout(settings)
    decision = decide(evidence, monitor_policy(params), last_trigger, retrains_in_flight, history,
                      rollout.candidate if rollout is not None and rollout.active else None)
    summary = WindowSummary(data.window, data.rows, data.champion.version, drift, quality, decision.to_dict(),
                            data.ingest_warnings)
    out = report_dir(lake, data.window)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=1, default=str))
    if drift.report and Path(drift.report).exists():
        annotate_report(Path(drift.report), summary)
    if decision.trigger or decision.status == "suppressed":
        audit_record("drift_trigger", f"window {data.window}", "triggered" if decision.trigger else "suppressed",
                     decision.reasons, {"drifted_columns": list(decision.drifted_columns), "report": drift.report,
                                        "champion": data.champion.version}, settings=settings)
    log_headlines(settings, params, summary)
    return summary


def assess_window(lake: Lake, params: Params, settings: Settings, window: date,
                  retrains_in_flight: int = 0) -> WindowSummary:
    """The whole window in one process (``ctloop monitor``); the DAG runs the steps as tasks."""
    data = collect_window(lake, params, window, settings)
    drift = measure_drift(params, data, report_dir(lake, window) / "report.html")
    return decide_window(lake, params, settings, data, drift, measure_quality(lake, params, data), retrains_in_flight)


def log_headlines(settings: Settings, params: Params, summary: WindowSummary) -> None:
    """One MLflow run per window in the monitoring experiment, so the trend can be plotted."""
    import mlflow

    from ctloop.core.metrics import emit_gauges
    from ctloop.registry.mlflow_registry import configure_mlflow, ensure_experiment

    client = configure_mlflow(settings)
    exp = ensure_experiment(client, params.monitoring.experiment, settings)
    drift, quality = summary.drift, summary.quality
    metrics = {"rows": float(summary.rows), "labeled_rows": float(quality.labeled_rows),
               "triggered": float(summary.decision["trigger"])}
    if drift.drift_share is not None:
        metrics |= {"drift_share": float(drift.drift_share), "drifted_columns": float(len(drift.drifted_columns)),
                    "prediction_drift": float(bool(drift.prediction_drift))}
    if quality.quality is not None:
        metrics["quality"] = float(quality.quality)
    with library_output_to_log("mlflow"), mlflow.start_run(experiment_id=exp, run_name=f"monitor-{summary.window}"):
        mlflow.set_tags({"ctloop.window": summary.window.isoformat(), "ctloop.champion": summary.champion,
                         "ctloop.status": summary.decision["status"]})
        mlflow.log_metrics(metrics)
    # the same headlines as gauges for Grafana (drift share and quality per window, champion over time)
    champion = summary.champion
    emit_gauges("monitor", {**metrics, "champion_version": int(champion) if str(champion).isdigit() else None},
                {"model": params.dataset.name})


def drift_event_extra(summary: dict[str, Any]) -> dict[str, Any]:
    """The drift Asset event's ``extra``: why, which columns, which window, and what to train on."""
    d = summary["decision"]
    return {"reasons": d["reasons"], "drifted_columns": d["drifted_columns"], "window": summary["window"],
            "report": summary["report"], "recommended_window_days": d["recommended_window_days"],
            "estimated_drift_start": d["estimated_drift_start"], "champion": summary["champion"],
            "as_of": (date.fromisoformat(summary["window"]) + timedelta(days=1)).isoformat()}
