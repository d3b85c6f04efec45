"""One monitoring window of an LLM app: the day's request log summarised per prompt version (tokens, cost,
schema failures, refusals, latency per tool), the tickets' text compared with the days before, the limits
judged, and the result recorded: metrics per version in the app's monitoring experiment
(``ctloop-<app>-monitoring``), gauges for Grafana (``ctloop.llm.*`` tagged by app and prompt version), one
audit entry (an ``alert`` outcome goes out on the alerts connection)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from ctloop.core.audit import record as audit_record
from ctloop.core.errors import InsufficientData
from ctloop.core.metrics import emit_gauges
from ctloop.data.llm_log import read_llm_log
from ctloop.decisions.llm_monitor import LlmWindowDecision, judge_window
from ctloop.monitoring.llm import text_drift, version_stats
from ctloop.monitoring.records import VersionStats
from ctloop.registry.mlflow_registry import configure_mlflow, ensure_experiment

if TYPE_CHECKING:
    from ctloop.core.apps import LlmAppSpec
    from ctloop.core.settings import Settings

REFERENCE_DAYS = 7


@dataclass(frozen=True)
class LlmWindow:
    app: str
    day: date
    rows: int
    versions: tuple[VersionStats, ...]
    text_drift: dict[str, Any] | None
    decision: LlmWindowDecision
    run_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"app": self.app, "day": self.day.isoformat(), "rows": self.rows, "run_id": self.run_id,
                "versions": {s.version: s.metrics() for s in self.versions}, "text_drift": self.text_drift,
                "decision": self.decision.to_dict()}


def monitor_app(settings: Settings, spec: LlmAppSpec, day: date) -> LlmWindow:
    import mlflow
    import pandas as pd

    frame = read_llm_log(settings.lake_root, spec.name, day)
    if frame.empty:
        raise InsufficientData(f"{settings.lake_root / 'llm_log' / spec.name / f'dt={day}'}: no requests logged")
    stats = version_stats(frame)
    before = [read_llm_log(settings.lake_root, spec.name, day - timedelta(days=i)) for i in range(1, REFERENCE_DAYS + 1)]
    reference = pd.concat([b for b in before if not b.empty] or [frame.iloc[0:0]], ignore_index=True)
    drift = text_drift(reference["text"], frame["text"]) if len(reference) else None
    decision = judge_window(stats, spec.monitoring, drift)
    client = configure_mlflow(settings)
    experiment = ensure_experiment(client, f"ctloop-{spec.name}-monitoring", settings)
    with mlflow.start_run(experiment_id=experiment, run_name=f"{spec.name}-{day}") as run:
        mlflow.set_tags({"ctloop.window": day.isoformat(), "ctloop.kind": "llm_app", "ctloop.alert": decision.alert})
        metrics = {"tokens": float(decision.tokens), "cost": decision.cost, "requests": float(len(frame))}
        for s in stats:
            metrics.update({f"v{s.version}.{k}": v for k, v in s.metrics().items()})
        mlflow.log_metrics(metrics)
        window = LlmWindow(spec.name, day, len(frame), tuple(stats), drift, decision, run.info.run_id)
        mlflow.log_dict(window.to_dict(), "monitoring/window.json")
    for s in stats:  # Grafana: token use and cost per prompt version
        emit_gauges("llm", {k.replace(".", "_"): v for k, v in s.metrics().items()},
                    {"app": spec.name, "prompt_version": s.version})
    audit_record("llm_monitor", f"{spec.name} {day}", "alert" if decision.alert else "ok",
                 list(decision.reasons) or [f"{decision.tokens} tokens, cost {decision.cost:.4f}, within limits"],
                 {"run_id": run.info.run_id, "tokens": decision.tokens, "cost": round(decision.cost, 6),
                  "versions": [s.version for s in stats]},
                 settings=settings.model_copy(update={"model": spec.name}))
    return window
