"""What each retrain task cost, on the challenger's MLflow run: ``cost.<task>.*`` per task and the run's
totals ``cost.total.*``, recomputed from what the run holds after every task, so they are right whichever
task logged last (the measuring itself is :mod:`ctloop.core.metrics`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ctloop.core.metrics import task_metrics, total
from ctloop.registry.mlflow_registry import configure_mlflow

if TYPE_CHECKING:
    from ctloop.core.settings import Settings


def log_run_cost(settings: Settings, run_id: str, costs: list[dict[str, Any]]) -> dict[str, float]:
    """Log tasks' costs to an MLflow run (``cost.<task>.*``), then its totals over every task logged so far
    (``cost.total.*``): each retrain task adds itself, so the totals are right after whichever task ran last."""
    from mlflow.entities import Metric

    client = configure_mlflow(settings)
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in task_metrics(costs).items()])
    logged = client.get_run(run_id).data.metrics
    tasks: dict[str, dict[str, Any]] = {}
    for key, value in logged.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "cost" and parts[1] != "total":
            tasks.setdefault(parts[1], {"task": parts[1], "rows": None})[parts[2]] = value
    complete = [{"wall_seconds": 0.0, "cpu_seconds": 0.0, "max_rss_mb": 0.0, **t} for t in tasks.values()]
    totals = {f"cost.total.{k}": v for k, v in total(complete).items()}
    totals["cost.total.tasks"] = float(len(complete))
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in totals.items()])
    return totals
