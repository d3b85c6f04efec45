"""What one monitoring window hands from step to step (the ``<model>__monitor`` tasks pass them as XCom,
serialised at the edge): the champion's reference, the window's data, the drift and quality measured."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any


@dataclass(frozen=True)
class ChampionReference:
    """The champion the window is judged against: its reference sample (training rows with its scores,
    stored with the version and cached locally), its test-set quality, and the drift thresholds calibrated
    on that sample at training time (None for a version trained before calibration existed)."""

    version: str
    run_id: str
    sample_path: str
    quality: float | None
    label_share: float | None
    calibration_path: str | None = None
    label_cut: float | None = None  # regression: the training target's median (label_share is the share above)
    label_shares: dict[str, float] | None = None  # multiclass: each class's share of the training labels

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WindowData:
    """The window's prediction-log partition, checked from Parquet footers once."""

    window: date
    rows: int
    files: tuple[str, ...]
    labels_arrived: int  # labels that arrived on the window's day
    champion: ChampionReference
    ingest_warnings: tuple[str, ...] = ()  # validation warnings of the day's curated delivery, if any

    @property
    def partition_exists(self) -> bool:
        return bool(self.files)

    def to_dict(self) -> dict[str, Any]:
        return {"window": self.window.isoformat(), "rows": self.rows, "files": list(self.files),
                "partition_exists": self.partition_exists, "labels_arrived": self.labels_arrived,
                "champion": self.champion.to_dict(), "ingest_warnings": list(self.ingest_warnings)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowData:
        return cls(date.fromisoformat(d["window"]), int(d["rows"]), tuple(d["files"]), int(d["labels_arrived"]),
                   ChampionReference(**d["champion"]), tuple(d.get("ingest_warnings") or ()))


@dataclass(frozen=True)
class DriftMeasurement:
    champion: str
    rows: int
    drift: dict[str, Any] | None = None  # Evidently's per-column result (DriftResult.to_dict())
    report: str | None = None
    drift_share: float | None = None
    drifted_columns: tuple[str, ...] = ()
    prediction_drift: bool | None = None
    prediction_drift_score: float | None = None
    unseen: dict[str, float] = field(default_factory=dict)
    thresholds: str = "fixed"  # "calibrated" (from the champion's reference) or "fixed" (Evidently's), and why
    missing: dict[str, dict[str, Any]] = field(default_factory=dict)  # column -> null shares and the verdict

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"drifted_columns": list(self.drifted_columns)}

    @property
    def missing_drifted(self) -> dict[str, tuple[float, float]]:
        return {c: (m["reference"], m["current"]) for c, m in self.missing.items() if m["drift"]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DriftMeasurement:
        return cls(**{**d, "drifted_columns": tuple(d.get("drifted_columns") or ())})


@dataclass(frozen=True)
class QualityMeasurement:
    """The champion's quality on the newest earlier window whose labels arrived (concept drift, one window
    late), beside its test-set quality."""

    quality: float | None
    labeled_rows: int
    quality_window: date | None
    label_share: float | None
    reference_quality: float | None
    reference_label_share: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"quality_window": self.quality_window.isoformat() if self.quality_window else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QualityMeasurement:
        qw = d.get("quality_window")
        return cls(d.get("quality"), int(d.get("labeled_rows") or 0),
                   date.fromisoformat(str(qw)) if qw else None, d.get("label_share"),
                   d.get("reference_quality"), d.get("reference_label_share"))


@dataclass(frozen=True)
class WindowSummary:
    """One window's outcome: the evidence and the policy's decision (``summary.json`` beside the report,
    the MLflow monitoring run and the drift Asset event all come from it)."""

    window: date
    rows: int
    champion: str
    drift: DriftMeasurement
    quality: QualityMeasurement
    decision: dict[str, Any]  # DriftDecision.to_dict()
    ingest_warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d, q = self.drift, self.quality.to_dict()
        return {"window": self.window.isoformat(), "rows": self.rows, "champion": self.champion,
                "drift_share": d.drift_share, "drifted_columns": list(d.drifted_columns),
                "prediction_drift": d.prediction_drift, "prediction_drift_score": d.prediction_drift_score,
                "unseen": d.unseen, "missing": d.missing, "thresholds": d.thresholds, "report": d.report,
                **{k: q[k] for k in ("quality", "labeled_rows", "quality_window", "reference_quality",
                                     "label_share", "reference_label_share")},
                "drift": d.drift, "ingest_warnings": list(self.ingest_warnings), "decision": self.decision}


@dataclass(frozen=True)
class RouteStats:
    requests: int
    errors: int = 0
    p99_ms: float | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class StepEvidence:
    """One measurement of a step: both routes over the same period since the step began."""

    elapsed_seconds: float
    champion: RouteStats
    candidate: RouteStats
    score_distance: float | None = None
    decision_agreement: float | None = None
    quality_drop: float | None = None
    labeled: int = 0  # candidate requests with a label
    guard_stopped: bool = False  # the server's canary guard set the candidate's weight to 0
    tokens_ratio: float | None = None  # LLM apps: candidate tokens per request / the champion's
    refusal_rate_increase: float | None = None

    def metric(self, name: str) -> float | None:
        if name == "error_rate_increase":
            return self.candidate.error_rate - self.champion.error_rate if self.candidate.requests else None
        if name == "p99_ratio":
            c, k = self.champion.p99_ms, self.candidate.p99_ms
            return k / c if c and k is not None else None
        value: float | None = getattr(self, name)
        return value


@dataclass(frozen=True)
class VersionStats:
    version: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost: float
    tokens_per_request: float
    schema_failure_rate: float
    refusal_rate: float
    error_rate: float
    p95_latency_ms: float | None
    tool_ms: dict[str, float]  # mean latency per tool call

    def metrics(self) -> dict[str, float]:
        out = {k: float(v) for k, v in asdict(self).items() if isinstance(v, int | float) and not isinstance(v, bool)}
        out.update({f"tool_ms.{k}": v for k, v in self.tool_ms.items()})
        return out
