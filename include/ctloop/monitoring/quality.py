"""Labeled quality: the model's quality on logged requests whose delayed labels arrived, measured with
Evidently's classification metrics, and the label reads it needs, bounded by the window (never by the
whole history of labels)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from ctloop.data.predictions import labels_arrived, read_predictions
from ctloop.monitoring.reference import SCORE

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.core.params import Params
    from ctloop.data.store import Lake

# concept drift is judged on the newest earlier window whose labels arrived, at most this far back
LOOKBACK_DAYS = 7


def window_labels(lake: Lake, window: date) -> pd.DataFrame:
    """Every label that can judge a window up to ``LOOKBACK_DAYS`` back: those that arrived from the oldest
    such window to this one (a label arrives after its request)."""
    return labels_arrived(lake, window, since=window - timedelta(days=LOOKBACK_DAYS))


def quality_of(metric: str, joined: pd.DataFrame, task: str = "binary") -> float:
    """The quality on labeled requests, with Evidently's classification or regression metrics."""
    import os

    os.environ.setdefault("DO_NOT_TRACK", "true")
    from evidently import (
        BinaryClassification,
        DataDefinition,
        Dataset,
        MulticlassClassification,
        Regression,
        Report,
    )
    from evidently.metrics import MAE, RMSE, Accuracy, F1Score, R2Score, RocAuc

    if task == "multiclass":  # on the predicted classes: Evidently's F1 is macro-averaged for several classes
        frame = joined[["label", "prediction"]].astype("int64")
        definition = DataDefinition(classification=[MulticlassClassification(target="label",
                                                                             prediction_labels="prediction")],
                                    categorical_columns=["label", "prediction"])
        evidently_metric = {"f1_macro": F1Score, "accuracy_score": Accuracy}[metric]()
        snapshot = Report([evidently_metric]).run(Dataset.from_pandas(frame, data_definition=definition), None)
        return float(snapshot.dict()["metrics"][0]["value"])
    if task == "regression":
        frame = joined[["label", SCORE]].astype("float64")
        definition = DataDefinition(regression=[Regression(target="label", prediction=SCORE)],
                                    numerical_columns=["label", SCORE])
        evidently_metric = {"r2_score": R2Score, "root_mean_squared_error": RMSE, "mean_absolute_error": MAE}[metric]()
        snapshot = Report([evidently_metric]).run(Dataset.from_pandas(frame, data_definition=definition), None)
        value = snapshot.dict()["metrics"][0]["value"]
        return float(value["mean"] if isinstance(value, dict) else value)  # RMSE/MAE: mean (and std) of the error
    frame = joined[["label", SCORE, "prediction"]].astype({"label": "int64", "prediction": "int64"})
    definition = DataDefinition(classification=[BinaryClassification(
        target="label", prediction_probas=SCORE, prediction_labels="prediction")])
    evidently_metric = {"roc_auc": RocAuc, "f1_score": F1Score, "accuracy_score": Accuracy}[metric]()
    snapshot = Report([evidently_metric]).run(Dataset.from_pandas(frame, data_definition=definition), None)
    return float(snapshot.dict()["metrics"][0]["value"])


def served_and_labeled(lake: Lake, params: Params, day: date, version: str, labels: pd.DataFrame) -> pd.DataFrame:
    """``day``'s requests that ``version`` answered (shadow rows excluded) joined with their labels."""
    preds = read_predictions(lake, day, params.dataset)
    preds = preds[(preds["model_version"].astype(str) == version) & (preds["route"] != "shadow")]
    return preds.merge(labels, on="request_id")


def labeled_quality(lake: Lake, params: Params, window: date, version: str, labels: pd.DataFrame,
                    label_cut: float | None = None, label_shares: dict[str, float] | None = None
                    ) -> tuple[float | None, int, date | None, float | None]:
    """(quality, labeled rows, the window judged, its positive-label share, or for regression its share of
    labels above ``label_cut``) of ``version`` on the newest earlier window with enough labeled requests it
    served; Nones when there is none."""
    if labels.empty:
        return None, 0, None, None
    for back in range(1, LOOKBACK_DAYS + 1):
        day = window - timedelta(days=back)
        joined = served_and_labeled(lake, params, day, version, labels)
        if len(joined) < params.monitoring.min_labeled_rows or joined["label"].nunique() < 2:
            continue
        task = params.dataset.task
        y = joined["label"].astype("float64")
        if task == "multiclass" and label_shares is not None:  # total variation distance from training's shares
            share = 0.5 * sum(abs(float((y == int(c)).mean()) - s) for c, s in label_shares.items())
        elif task == "regression" and label_cut is not None:
            share = float((y > label_cut).mean())
        else:
            share = float(y.mean())
        return quality_of(params.monitoring.quality_metric, joined, task), len(joined), day, share
    return None, 0, None, None
