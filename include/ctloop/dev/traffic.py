"""``ctloop simulate traffic``: simulated production requests scored by the current ``@champion``, appended
to the prediction log, with the labels that arrive ``label_delay_days`` later. Deterministic for the same
arguments and champion (latency is simulated, not measured, for that reason)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from ctloop.data.predictions import write_predictions

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.core.params import Params
    from ctloop.core.settings import Settings
    from ctloop.data.store import Lake

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


def day_requests(day: date, spec: TrafficSpec, params: Params) -> tuple[pd.DataFrame, pd.DataFrame, Any, Any]:
    """One day of simulated requests: (the simulator's labeled rows, the requests as logged before scoring,
    a simulated latency in ms per request, which requests get a label). Deterministic per day and spec,
    whichever path scores them."""
    import numpy as np
    import pandas as pd

    from ctloop.data.simulator import SimulationSpec, simulate_day

    contract = params.dataset
    source = simulate_day(day, SimulationSpec(scenario=spec.scenario, drift_start=spec.drift_start,
                                              magnitude=spec.magnitude, rows=spec.rows_per_day,
                                              seed=params.source.seed + TRAFFIC_SEED_OFFSET,
                                              text=params.source.text))
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"traffic:{day}:{spec}".encode()).digest()[:8], "little"))
    requests = pd.DataFrame({"request_id": "R" + source[contract.id].str[1:], "ts": source[contract.timestamp]})
    requests = pd.concat([requests, source[contract.features].reset_index(drop=True)], axis=1)
    latency_ms = np.round(rng.lognormal(np.log(3.0), 0.3, len(requests)), 3)
    labeled = rng.random(len(requests)) < spec.label_fraction
    return source, requests, latency_ms, labeled


def day_labels(day: date, spec: TrafficSpec, params: Params, source: pd.DataFrame, requests: pd.DataFrame,
               labeled: Any) -> pd.DataFrame:
    """The labels of the ``labeled`` requests, as a labelling system delivers them ``label_delay_days``
    later: request id, label, when it was labeled."""
    import pandas as pd

    labels = pd.DataFrame({
        "request_id": requests["request_id"][labeled].to_numpy(),
        "label": source[params.dataset.target][labeled].to_numpy(),
        "labeled_at": (requests["ts"][labeled] + pd.Timedelta(days=spec.label_delay_days)).to_numpy(),
    })
    labels["labeled_at"] = pd.to_datetime(labels["labeled_at"], utc=True)
    return labels


def write_day_labels(day: date, spec: TrafficSpec, params: Params, settings: Settings, lake: Lake,
                     source: pd.DataFrame, requests: pd.DataFrame, labeled: Any) -> int:
    """Deliver the day's labels through the label source (a file where ``labels.path`` says, one per
    arrival day) and ingest them as ``<model>__labels`` would: the same path real labels take."""
    from ctloop.flows.labels import deliver_labels, ingest_labels

    labels = day_labels(day, spec, params, source, requests, labeled)
    for arrival, part in labels.groupby(labels["labeled_at"].dt.date, sort=True):
        deliver_labels(part, params, settings, arrival, f"simulated-{day}")
        outcome = ingest_labels(arrival, params, settings, lake)
        if outcome.status != "stored":
            raise RuntimeError(f"simulated labels for {day} not stored: {outcome.line()}")
    return int(labeled.sum())


def simulate_traffic(spec: TrafficSpec, params: Params, settings: Settings, lake: Lake) -> list[dict[str, Any]]:
    """Score each day's requests in-process with ``@champion`` (no server) and log them."""
    from ctloop.estimators.scoring import answers, model_output


    version, model = load_champion(settings, params)
    name = params.training.registered_model
    out = []
    for i in range(spec.days):
        day = spec.start + timedelta(days=i)
        source, log, latency_ms, labeled = day_requests(day, spec, params)
        output = model_output(model, log[params.dataset.features], params.dataset.task, params.dataset.classes)
        predictions, scores = answers(output, params.dataset, params.evaluation.threshold)
        log.insert(2, "model_name", name)
        log.insert(3, "model_version", version)
        log.insert(4, "route", "champion")
        log["prediction"] = predictions
        log["score"] = scores
        log["latency_ms"] = latency_ms
        write_predictions(lake, log, name=f"simulated-v{version}")
        labels = write_day_labels(day, spec, params, settings, lake, source, log, labeled)
        out.append({"date": day.isoformat(), "rows": len(log), "champion": version, "labels": labels,
                    "labels_arrive": (day + timedelta(days=spec.label_delay_days)).isoformat()})
    return out
