"""Evaluate challenger and champion on the same test set with ``mlflow.models.evaluate`` (the task's
metrics and plots as artifacts: ``classifier`` or ``regressor``), plus per-slice metrics and, for a binary
classifier, Brier score and expected calibration error."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.core.logs import library_output_to_log
from ctloop.core.task import HEADLINE
from ctloop.estimators.scoring import model_output
from ctloop.evaluation.records import ModelEvaluation
from ctloop.registry.mlflow_registry import TAG, configure_mlflow, ensure_experiment

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ctloop.core.params import Params
    from ctloop.core.settings import Settings

MLFLOW_MODEL_TYPE = {"binary": "classifier", "multiclass": "classifier", "regression": "regressor"}


def multiclass_metrics(y: np.ndarray, proba: np.ndarray, classes: list[int]) -> dict[str, float]:
    """Beside MLflow's (weighted) figures: macro F1, which a rare class moves as much as a common one, and
    every class's recall (``recall_class_<c>``)."""
    import numpy as np
    from sklearn.metrics import f1_score, recall_score

    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    recalls = recall_score(y, predicted, labels=classes, average=None, zero_division=0)
    return {"f1_macro": float(f1_score(y, predicted, labels=classes, average="macro", zero_division=0)),
            "f1_weighted": float(f1_score(y, predicted, labels=classes, average="weighted", zero_division=0)),
            **{f"recall_class_{c}": float(r) for c, r in zip(classes, recalls, strict=True)}}


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    import numpy as np

    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            ece += mask.mean() * abs(float(y[mask].mean()) - float(p[mask].mean()))
    return float(ece)


def regression_metrics(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """The regression figures a slice is judged on (MLflow's names)."""
    import numpy as np
    from sklearn.metrics import mean_absolute_error, r2_score

    out = {"root_mean_squared_error": float(np.sqrt(np.mean((y - predicted) ** 2))),
           "mean_absolute_error": float(mean_absolute_error(y, predicted))}
    if len(y) > 1 and float(np.var(y)) > 0:
        out["r2_score"] = float(r2_score(y, predicted))
    return out


def slice_metrics(test: pd.DataFrame, scores: np.ndarray, params: Params) -> dict[str, dict[str, dict[str, float]]]:
    from sklearn.metrics import roc_auc_score

    target = params.dataset.target
    out: dict[str, dict[str, dict[str, float]]] = {}
    for column in params.dataset.slices:
        out[column] = {}
        for value, idx in test.groupby(column, observed=True).indices.items():
            y = test[target].to_numpy()[idx]
            entry = {"rows": float(len(idx))}
            if not params.dataset.is_classifier:
                entry |= {"target_mean": float(y.mean()), **regression_metrics(y.astype("float64"), scores[idx])}
            elif params.dataset.task == "multiclass":
                entry |= multiclass_metrics(y, scores[idx], params.dataset.classes)
            else:
                entry["positive_share"] = float(y.mean())
                if len(set(y.tolist())) == 2:
                    entry["roc_auc"] = float(roc_auc_score(y, scores[idx]))
            out[column][str(value)] = entry
    return out


def evaluate_version(model_uri: str, version: str, run_id: str | None, test: pd.DataFrame, params: Params,
                     settings: Settings, role: str) -> ModelEvaluation:
    """Evaluate one registered version on ``test``; metrics go to ``run_id`` (the challenger's training run)
    or to a new evaluation run for the champion."""
    import mlflow
    from sklearn.metrics import brier_score_loss

    client = configure_mlflow(settings)
    contract = params.dataset
    data = test[[*contract.features, contract.target]].reset_index(drop=True)
    sk_model = mlflow.sklearn.load_model(model_uri)
    scores = model_output(sk_model, data[contract.features], contract.task, contract.classes)
    y = data[contract.target].to_numpy()
    extra = ({"brier_score": float(brier_score_loss(y, scores)), "ece": expected_calibration_error(y, scores)}
             if contract.task == "binary" else multiclass_metrics(y, scores, contract.classes)
             if contract.task == "multiclass" else {})
    slices = slice_metrics(test.reset_index(drop=True), scores, params)

    experiment_id = ensure_experiment(client, params.training.experiment, settings)
    run_kwargs: dict[str, Any] = {"run_id": run_id} if run_id else {
        "experiment_id": experiment_id, "run_name": f"evaluate-{role}-v{version}"}
    with library_output_to_log("mlflow"), mlflow.start_run(**run_kwargs):
        mlflow.set_tags({f"{TAG}evaluated_version": version, f"{TAG}evaluated_role": role})
        result = mlflow.models.evaluate(model_uri, data, targets=contract.target, model_type=MLFLOW_MODEL_TYPE[contract.task],
                                        evaluators=["default"])
        flat = {f"slice.{c}.{v}.{k}": val for c, vals in slices.items() for v, m in vals.items()
                for k, val in m.items() if k == params.gate.slices.metric}
        mlflow.log_metrics({**extra, **flat})
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "slices.json").write_text(json.dumps(slices, indent=1))
            mlflow.log_artifacts(tmp, artifact_path="evaluation")
    metrics = {k: float(v) for k, v in result.metrics.items() if k in HEADLINE[contract.task]}
    if not contract.is_classifier and bool((abs(y.astype("float64")) < 1e-9).any()):
        metrics.pop("mean_absolute_percentage_error", None)  # undefined where a true value is 0 (MLflow logs 1e15)
    metrics.update({k: v for k, v in extra.items()})  # recall_class_<c> too: a gate may hold a class's recall
    return ModelEvaluation(version=version, metrics=metrics, slices=slices)
