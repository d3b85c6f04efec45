"""Time of mlflow.sklearn.log_model for the ctloop pipeline, and what each part costs (goal: under 0.2 s).

Prints the median of 5 calls for: ctloop's call (signature, input example, explicit pip requirements,
skops trusted types, registration), and variants that drop one part each, plus MLflow's default
requirement inference for comparison."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "models" / "support_escalation.yaml"  # the demo model's spec (over models/_defaults.yaml)
sys.path.insert(0, str(REPO / "include"))


def main() -> None:
    import logging

    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from ctloop.core.params import load_params
    from ctloop.data.simulator import SimulationSpec, simulate_day
    from ctloop.estimators.pipeline import build_pipeline
    from ctloop.training.train import pip_requirements, trusted_types

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    params = load_params(SPEC)
    feats = params.dataset.features
    train = pd.concat([simulate_day(date(2026, 1, d), SimulationSpec(rows=2000)) for d in range(1, 11)])
    pipe = build_pipeline(params.dataset, "logistic_regression").fit(train[feats], train["escalated"])
    example = train[feats].head(5).astype({c: "float64" for c in params.dataset.numeric_features})
    signature = infer_signature(example, pipe.predict(example))
    tmp = Path(tempfile.mkdtemp())
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    exp = mlflow.create_experiment("bench", artifact_location=(tmp / "artifacts").as_uri())
    trusted = trusted_types(pipe)
    reqs = pip_requirements()

    variants = {
        "ctloop: signature+example+pip_requirements+trusted types+register":
            dict(signature=signature, input_example=example, pip_requirements=reqs, skops_trusted_types=trusted,
                 registered_model_name="bench"),
        "  without registration":
            dict(signature=signature, input_example=example, pip_requirements=reqs, skops_trusted_types=trusted),
        "  without registration and input example":
            dict(signature=signature, pip_requirements=reqs, skops_trusted_types=trusted),
        "  pickle instead of skops (no registration, no example)":
            dict(signature=signature, pip_requirements=reqs, serialization_format="cloudpickle"),
        "MLflow default requirement inference (no registration)":
            dict(signature=signature, input_example=example, skops_trusted_types=trusted),
    }
    t = time.perf_counter()
    trusted_types(pipe)
    print(f"{'skops get_untrusted_types scan (ctloop computes it per model)':<66} {time.perf_counter() - t:6.3f} s")
    for label, kwargs in variants.items():
        times = []
        for _ in range(5 if "inference" not in label else 2):
            with mlflow.start_run(experiment_id=exp):
                start = time.perf_counter()
                mlflow.sklearn.log_model(pipe, name="model", **kwargs)
                times.append(time.perf_counter() - start)
        print(f"{label:<66} {statistics.median(times):6.3f} s (median of {len(times)})")


if __name__ == "__main__":
    main()
