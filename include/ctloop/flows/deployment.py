"""The deployment's models at a glance (``ctloop models``): each model's spec, champion, last DAG run and
last drift decision, read from the models folder, the MLflow registry, the audit log and the lake. Reads
only; a spec that does not validate is listed with its error, never skipped."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ctloop.core.errors import ConfigError

if TYPE_CHECKING:
    from ctloop.core.settings import Settings


@dataclass(frozen=True)
class ModelOverview:
    name: str
    spec: str
    task: str | None = None
    registered_model: str | None = None
    champion: str | None = None
    last_run: dict[str, Any] | None = None  # the newest DAG run outcome of the model (audit log)
    last_drift: dict[str, Any] | None = None  # the newest monitoring window's decision
    error: str | None = None  # the spec does not validate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _last_runs(settings: Settings) -> dict[str, dict[str, Any]]:
    from ctloop.core.audit import audit_log

    log = audit_log(settings)
    last: dict[str, dict[str, Any]] = {}
    if not log.path.exists():
        return last
    for entry in log.entries():
        model = entry.get("model")
        if entry["kind"] == "dag_run" and model:
            last[model] = {"dag_run": entry["subject"], "outcome": entry["outcome"], "at": entry["at"]}
    return last


def _last_drift(settings: Settings) -> dict[str, Any] | None:
    root = settings.lake_root / "reports" / "monitor"
    days = sorted(root.glob("dt=*/summary.json")) if root.is_dir() else []
    if not days:
        return None
    decision = json.loads(days[-1].read_text())["decision"]
    return {"window": days[-1].parent.name.removeprefix("dt="), "status": decision["status"],
            "trigger": decision["trigger"], "reasons": decision["reasons"][:3]}


def describe_models(settings: Settings, with_registry: bool = True) -> list[ModelOverview]:
    """Every model of the deployment, sorted by name. An unreachable MLflow raises
    :class:`~ctloop.core.errors.DependencyUnavailable` (it must not read as "no champion")."""
    from ctloop.core.params import load_params

    client = None
    if with_registry:
        from ctloop.registry.mlflow_registry import configure_mlflow

        client = configure_mlflow(settings)
    runs = _last_runs(settings)
    out = []
    for name in settings.model_names():
        ms = settings.for_model(name)
        spec = str(ms.spec_path)
        try:
            params = load_params(ms.spec_path)
        except ConfigError as e:
            out.append(ModelOverview(name, spec, error=str(e)))
            continue
        champion = None
        if client is not None:
            from ctloop.registry.mlflow_registry import alias_version

            champion = alias_version(client, params.training.registered_model, "champion")
        out.append(ModelOverview(name, spec, params.dataset.task, params.training.registered_model, champion,
                                 runs.get(name), _last_drift(ms)))
    return out
