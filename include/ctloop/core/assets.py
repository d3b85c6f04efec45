"""Names of the Airflow Assets that connect a model's DAGs (strings only: the library does not import
Airflow). Each model has its own, so a drift of one model never schedules another model's retrain."""

from __future__ import annotations


def curated(model: str) -> str:
    """Emitted by ``<model>__ingest`` for each curated partition."""
    return f"ctloop/{model}/curated"


def drift(model: str) -> str:
    """Emitted by ``<model>__monitor`` when its policy triggers; schedules ``<model>__retrain``."""
    return f"ctloop/{model}/drift"


def rollback_alert(model: str) -> str:
    """Emitted by ``<model>__monitor`` when it rolled the champion back."""
    return f"ctloop/{model}/rollback"


def labels(model: str) -> str:
    """Emitted by ``<model>__labels`` for each stored label delivery."""
    return f"ctloop/{model}/labels"


def rollout(model: str) -> str:
    """Emitted by ``<model>__retrain`` when a gated challenger starts a staged rollout; schedules
    ``<model>__rollout``."""
    return f"ctloop/{model}/rollout"
