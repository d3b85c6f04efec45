"""What an evaluation hands the gate: records only (no I/O), so the pure decisions can import them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelEvaluation:
    version: str | None
    metrics: dict[str, float]
    slices: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # column -> value -> metrics
