"""The reference profile of a training set: the statistics the monitor compares production against.

Stored with the model version (as an MLflow artifact) so drift is always judged against the data the
champion actually learned from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ctloop.core.params import DatasetSpec

QUANTILES = [i / 20 for i in range(21)]


def reference_profile(frame: pd.DataFrame, contract: DatasetSpec, scores: np.ndarray | None = None) -> dict[str, Any]:
    profile: dict[str, Any] = {"rows": len(frame), "columns": {}}
    for col in contract.numeric_features:
        s = frame[col].astype("float64")
        profile["columns"][col] = {
            "kind": "numerical", "mean": float(s.mean()), "std": float(s.std()), "min": float(s.min()),
            "max": float(s.max()), "null_share": float(s.isna().mean()),
            "quantiles": [float(q) for q in s.quantile(QUANTILES).to_numpy()],
        }
    for col in contract.categorical_features:
        freq = frame[col].astype("string").fillna("__missing__").value_counts(normalize=True)
        profile["columns"][col] = {"kind": "categorical", "frequencies": {str(k): float(v) for k, v in freq.items()},
                                   "null_share": float(frame[col].isna().mean())}
    target = contract.target
    y = frame[target].astype("float64")
    profile["target"] = ({"column": target, "positive_share": float(y.mean())} if contract.is_classifier else
                         {"column": target, "mean": float(y.mean()), "std": float(y.std()),
                          "quantiles": [float(q) for q in y.quantile(QUANTILES).to_numpy()]})
    if scores is not None:
        import numpy as np

        profile["prediction"] = {"mean": float(np.mean(scores)),
                                 "quantiles": [float(q) for q in np.quantile(scores, QUANTILES)]}
    return profile
