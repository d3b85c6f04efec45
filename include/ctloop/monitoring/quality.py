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


def quality_of(metric: str, joined: pd.DataFrame) -> float:
    """The quality on labeled requests, with Evidently's classification metrics."""
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


def served_and_labeled(lake: Lake, params: Params, day: date, version: str, labels: pd.DataFrame) -> pd.DataFrame:
    """``day``'s requests that ``version`` answered (shadow rows excluded) joined with their labels."""
    preds = read_predictions(lake, day, params.dataset)
    preds = preds[(preds["model_version"].astype(str) == version) & (preds["route"] != "shadow")]
    return preds.merge(labels, on="request_id")


def labeled_quality(lake: Lake, params: Params, window: date, version: str, labels: pd.DataFrame
                    ) -> tuple[float | None, int, date | None, float | None]:
    """(quality, labeled rows, the window judged, its positive-label share) of ``version`` on the newest
    earlier window with enough labeled requests it served; Nones when there is none."""
    if labels.empty:
        return None, 0, None, None
    for back in range(1, LOOKBACK_DAYS + 1):
        day = window - timedelta(days=back)
        joined = served_and_labeled(lake, params, day, version, labels)
        if len(joined) < params.monitoring.min_labeled_rows or joined["label"].nunique() < 2:
            continue
        return (quality_of(params.monitoring.quality_metric, joined), len(joined), day,
                float(joined["label"].astype(int).mean()))
    return None, 0, None, None
