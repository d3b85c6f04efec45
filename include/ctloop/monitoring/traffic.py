"""``ctloop simulate traffic``: simulated production requests scored by the current ``@champion``, appended
to the prediction log, with the labels that arrive ``label_delay_days`` later. Deterministic for the same
arguments and champion (latency is simulated, not measured, for that reason)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from ctloop.monitoring.prediction_log import write_labels, write_predictions

if TYPE_CHECKING:
    from ctloop.data.store import Lake
    from ctloop.params import Params
    from ctloop.settings import Settings

TRAFFIC_SEED_OFFSET = 10_007  # production traffic is not the training stream


@dataclass(frozen=True)
class TrafficSpec:
    start: date
    days: int
    scenario: str = "stable"
    drift_start: date | None = None
    rows_per_day: int = 2000
    label_delay_days: int = 2
    label_fraction: float = 0.5
    magnitude: float = 1.0


def load_champion(settings: Settings, params: Params) -> tuple[str, Any]:
    import mlflow

    from ctloop.registry.mlflow_registry import configure_mlflow, require_champion

    name = params.training.registered_model
    version = require_champion(configure_mlflow(settings), name)
    return version, mlflow.sklearn.load_model(f"models:/{name}/{version}")


def simulate_traffic(spec: TrafficSpec, params: Params, settings: Settings, lake: Lake) -> list[dict[str, Any]]:
    import numpy as np
    import pandas as pd

    from ctloop.data.simulator import SimulationSpec, simulate_day

    version, model = load_champion(settings, params)
    contract = params.dataset
    name = params.training.registered_model
    out = []
    for i in range(spec.days):
        day = spec.start + timedelta(days=i)
        source = simulate_day(day, SimulationSpec(scenario=spec.scenario, drift_start=spec.drift_start,
                                                  magnitude=spec.magnitude, rows=spec.rows_per_day,
                                                  seed=params.source.seed + TRAFFIC_SEED_OFFSET))
        features = source[contract.features]
        scores = model.predict_proba(features)[:, 1]
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"traffic:{day}:{spec}".encode()).digest()[:8], "little"))
        log = pd.DataFrame({
            "request_id": "R" + source[contract.id].str[1:],
            "ts": source[contract.timestamp],
            "model_name": name,
            "model_version": version,
            "route": "champion",
        })
        log = pd.concat([log, features.reset_index(drop=True)], axis=1)
        log["prediction"] = (scores >= 0.5).astype("int64")
        log["score"] = scores
        log["latency_ms"] = np.round(rng.lognormal(np.log(3.0), 0.3, len(log)), 3)
        write_predictions(lake, log, name=f"simulated-v{version}")
        labeled = rng.random(len(log)) < spec.label_fraction
        labels = pd.DataFrame({
            "request_id": log["request_id"][labeled].to_numpy(),
            "label": source[contract.target][labeled].to_numpy(),
            "labeled_at": (log["ts"][labeled] + pd.Timedelta(days=spec.label_delay_days)).to_numpy(),
        })
        labels["labeled_at"] = pd.to_datetime(labels["labeled_at"], utc=True)
        write_labels(lake, labels, name=f"simulated-{day}")
        out.append({"date": day.isoformat(), "rows": len(log), "champion": version, "labels": int(labeled.sum()),
                    "labels_arrive": (day + timedelta(days=spec.label_delay_days)).isoformat()})
    return out
