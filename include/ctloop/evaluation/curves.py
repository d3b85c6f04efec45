"""ROC and calibration points of a model version on a test set, as CSV for ``dvc plots`` (``dvc.yaml``)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ctloop.core.params import Params
    from ctloop.core.settings import Settings


def write_curves(params: Params, settings: Settings, data_dir: Path, version: str, out_dir: Path,
                 points: int = 101, bins: int = 10) -> dict[str, Path]:
    import mlflow
    import numpy as np
    from sklearn.metrics import roc_curve

    from ctloop.data.training_set import read_training_set
    from ctloop.registry.mlflow_registry import configure_mlflow

    configure_mlflow(settings)
    _, test, _ = read_training_set(data_dir)
    contract = params.dataset
    model = mlflow.sklearn.load_model(f"models:/{params.training.registered_model}/{version}")
    if contract.task != "binary":
        return {}  # ROC and calibration curves are a classifier's; MLflow's regressor evaluation has its plots
    scores = model.predict_proba(test[contract.features])[:, 1]
    y = test[contract.target].to_numpy()
    fpr, tpr, _ = roc_curve(y, scores)
    grid = np.linspace(0, 1, points)  # a fixed grid keeps the file small and diffs between runs readable
    out_dir.mkdir(parents=True, exist_ok=True)
    roc = out_dir / "roc.csv"
    with roc.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["fpr", "tpr"])
        w.writerows((round(float(x), 4), round(float(v), 6)) for x, v in zip(grid, np.interp(grid, fpr, tpr), strict=True))
    calibration = out_dir / "calibration.csv"
    idx = np.clip((scores * bins).astype(int), 0, bins - 1)
    with calibration.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["predicted", "observed", "rows"])
        for b in range(bins):
            mask = idx == b
            if mask.any():
                w.writerow([round(float(scores[mask].mean()), 6), round(float(y[mask].mean()), 6), int(mask.sum())])
    return {"roc": roc, "calibration": calibration}
