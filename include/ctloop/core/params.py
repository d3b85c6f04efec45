"""A model's spec (``models/<name>.yaml`` over ``models/_defaults.yaml``): the dataset contract and every
policy, read the same way by DAGs, the CLI and DVC stages.

A bad file fails with one :class:`~ctloop.core.errors.ConfigError` naming the key (``dataset.columns.x.type``).
"""

from __future__ import annotations

import itertools
import re
from datetime import date
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ctloop.core.errors import ConfigError
from ctloop.core.settings import DEFAULTS_FILE, Settings
from ctloop.core.task import (
    DEFAULT_GATE,
    DEFAULT_QUALITY,
    GREATER_IS_BETTER,
    QUALITY_METRICS,
    Task,
    task_metrics,
)

# text: free text (a ticket's subject), vectorised with a bounded vocabulary; drift judged on its descriptors
ColumnType = Literal["string", "timestamp", "categorical", "integer", "float", "boolean", "text"]
NUMERIC_TYPES: frozenset[str] = frozenset({"integer", "float"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    type: ColumnType
    min: float | None = None
    max: float | None = None
    nullable: bool = True
    # this column's own null-share levels, over validation.null_tolerance / null_fail_share (a sensor that
    # is often missing: its normal is not every column's)
    null_warn_share: float | None = Field(default=None, ge=0, le=1)
    null_fail_share: float | None = Field(default=None, ge=0, le=1)


class DatasetSpec(_Strict):
    # the model's name: DAG ids (<name>__ingest), Assets, the lake prefix, metric labels
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    id: str
    timestamp: str
    target: str
    # binary (the default): the target is one of `classes`, the model gives the positive class's probability;
    # regression: the target is a number, the model predicts it
    task: Task = "binary"
    classes: list[int] = Field(default_factory=lambda: [0, 1], min_length=2)
    columns: dict[str, ColumnSpec]
    slices: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _roles_are_columns(self) -> DatasetSpec:
        for role in ("id", "timestamp", "target"):
            name = getattr(self, role)
            if name not in self.columns:
                raise ValueError(f"dataset.{role} names column {name!r}, which is not in dataset.columns")
        for name in self.slices:
            if name not in self.columns or self.columns[name].type != "categorical":
                raise ValueError(f"dataset.slices: {name!r} is not a categorical column of dataset.columns")
        if self.task == "binary" and len(self.classes) != 2:
            raise ValueError(f"dataset.classes: a binary task has two classes, got {self.classes} (use "
                             f"task: multiclass)")
        if self.task == "multiclass" and (len(self.classes) < 3 or len(set(self.classes)) != len(self.classes)):
            raise ValueError(f"dataset.classes: a multiclass task needs three or more distinct classes, got "
                             f"{self.classes}")
        if self.task == "regression" and self.columns[self.target].type not in NUMERIC_TYPES:
            raise ValueError(f"dataset.target: {self.target!r} is of type {self.columns[self.target].type!r}; "
                             f"a regression target must be an integer or float column")
        return self

    @property
    def is_classifier(self) -> bool:
        return self.task != "regression"

    @property
    def features(self) -> list[str]:
        roles = {self.id, self.timestamp, self.target}
        return [c for c in self.columns if c not in roles]

    @property
    def numeric_features(self) -> list[str]:
        return [c for c in self.features if self.columns[c].type in NUMERIC_TYPES]

    @property
    def categorical_features(self) -> list[str]:
        return [c for c in self.features if self.columns[c].type in ("categorical", "string", "boolean")]

    @property
    def text_features(self) -> list[str]:
        return [c for c in self.features if self.columns[c].type == "text"]


Scenario = Literal[
    "stable", "seasonal", "covariate_shift", "concept_shift", "label_shift",
    "upstream_bug", "new_category", "schema_break", "text_shift",
]


class SourceSpec(_Strict):
    kind: Literal["simulator", "files"] = "simulator"
    # simulator
    scenario: Scenario = "stable"
    text: bool = False  # the simulated tickets also carry a free-text `subject` (declare it `type: text`)
    drift_start: date | None = None
    magnitude: float = Field(default=1.0, ge=0)
    rows_per_day: int = Field(default=2000, gt=0)
    seed: int = 7
    # one-day incidents on top of the scenario, e.g. {"2026-01-09": "schema_break"}
    incidents: dict[date, Scenario] = Field(default_factory=dict)
    # files: a path or glob with {ds} for the partition date, e.g. "data/incoming/dt={ds}/*.parquet"
    path: str | None = None

    @model_validator(mode="after")
    def _files_need_path(self) -> SourceSpec:
        if self.kind == "files" and not self.path:
            raise ValueError("source.path is required when source.kind is 'files'")
        return self


class ValidationSpec(_Strict):
    """Two levels for what depends on the data (as Soda's checks have ``warn`` and ``fail``): beyond the
    warn level a batch passes with a warning (recorded, alerted, visible to the monitor); beyond the fail
    level it is quarantined. The contract (columns, types, bounds, non-nullable columns, the target's
    domain, unique ids, timestamps in the interval) always fails."""

    suite: str
    min_rows: int = Field(default=100, ge=1)
    max_rows: int = Field(default=1_000_000, ge=1)
    null_tolerance: float = Field(default=0.02, ge=0, le=1)  # warn above this null share
    null_fail_share: float = Field(default=0.10, ge=0, le=1)  # fail above this one
    unseen_category_tolerance: float = Field(default=0.02, ge=0, le=1)  # warn above this unseen share
    unseen_category_fail_share: float = Field(default=0.10, ge=0, le=1)
    numeric_margin: float = Field(default=0.25, ge=0)  # warn outside the observed range widened by this
    range_fail_factor: float = Field(default=10.0, gt=0)  # fail outside it widened by this many spans
    text_length_factor: float = Field(default=10.0, gt=1)  # fail on text this many times the longest seen
    on_warning: Literal["pass", "quarantine"] = "pass"

    @model_validator(mode="after")
    def _warn_below_fail(self) -> ValidationSpec:
        if self.null_tolerance > self.null_fail_share:
            raise ValueError("validation.null_tolerance (warn) must not exceed validation.null_fail_share")
        if self.unseen_category_tolerance > self.unseen_category_fail_share:
            raise ValueError("validation.unseen_category_tolerance (warn) must not exceed "
                             "validation.unseen_category_fail_share")
        return self


class ScheduleSpec(_Strict):
    start_date: date = date(2026, 1, 1)
    ingest: str = "0 0 * * *"


ModelName = Literal["logistic_regression", "hist_gradient_boosting", "ridge", "custom"]
# the built-in models of each dataset.task (hist_gradient_boosting is scikit-learn's classifier or regressor)
BUILT_IN_MODELS_BY_TASK: dict[str, tuple[str, ...]] = {
    "binary": ("logistic_regression", "hist_gradient_boosting"),
    "multiclass": ("logistic_regression", "hist_gradient_boosting"),
    "regression": ("ridge", "hist_gradient_boosting"),
}
BUILT_IN_MODELS: tuple[str, ...] = BUILT_IN_MODELS_BY_TASK["binary"]


class EstimatorSpec(_Strict):
    """Any scikit-learn-compatible estimator importable here: ``{class: "sklearn.ensemble.RandomForestClassifier",
    params: {n_estimators: 200}}``. It takes the place of the built-in model after ctloop's feature pipeline
    (or after the steps of ``training.pipeline``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    class_path: str = Field(alias="class")
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("class_path")
    @classmethod
    def _dotted(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*\.[A-Za-z_]\w*", value):
            raise ValueError(f"{value!r} is not an importable class path such as "
                             f"'sklearn.ensemble.RandomForestClassifier'")
        return value


class TrainingSpec(_Strict):
    experiment: str = "ctloop"
    registered_model: str
    # a built-in model, or "custom": training.estimator and/or training.pipeline (the default when either is set)
    model: ModelName = "logistic_regression"
    estimator: EstimatorSpec | None = None
    # "package.module:function": receives the dataset contract, returns an unfitted scikit-learn-compatible
    # pipeline (feature engineering included); the code lives in the project's include/ or an installed package
    pipeline: str | None = None
    window_days: int = Field(default=14, ge=2)
    test_days: int = Field(default=2, ge=1)
    min_rows: int = Field(default=2000, ge=10)
    seed: int = 42
    text_max_features: int = Field(default=300, ge=1, le=100_000)  # TF-IDF vocabulary per text column
    models: dict[ModelName, dict[str, float | int | str]] = Field(default_factory=dict)
    suite: str = "training_set"
    class_share: tuple[float, float] = (0.05, 0.95)
    schedule: str = "0 3 * * 1"

    @field_validator("pipeline")
    @classmethod
    def _module_function(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", value):
            raise ValueError(f"{value!r} is not a 'package.module:function' path")
        return value

    @model_validator(mode="after")
    def _window_holds_test(self) -> TrainingSpec:
        if self.test_days >= self.window_days:
            raise ValueError("training.test_days must be smaller than training.window_days")
        custom = self.estimator is not None or self.pipeline is not None
        if self.model == "custom" and not custom:
            raise ValueError("training.model is 'custom' but neither training.estimator nor training.pipeline is set")
        if custom and "model" not in self.model_fields_set:
            object.__setattr__(self, "model", "custom")  # frozen model: the default follows what is configured
        return self


class MetricPolicy(_Strict):
    greater_is_better: bool | None = None  # known for every metric ctloop knows (ctloop.core.task)
    threshold: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None
    tolerance: float = Field(default=0.0, ge=0)


class SlicePolicy(_Strict):
    metric: str = "roc_auc"  # regression: r2_score (the task's default quality metric)
    floor: float | None = None
    max_regression: float | None = Field(default=None, ge=0)
    min_rows: int = Field(default=100, ge=1)


class GateSpec(_Strict):
    metrics: dict[str, MetricPolicy] = Field(default_factory=dict)  # none: the task's DEFAULT_GATE
    within_tolerance: Literal["promote", "reject"] = "promote"
    slices: SlicePolicy = SlicePolicy()


class ColumnDriftRule(_Strict):
    method: str | None = None
    threshold: float | None = None


class MonitoringSpec(_Strict):
    schedule: str = "0 0 * * *"
    experiment: str = "ctloop-monitoring"
    min_rows: int = Field(default=500, ge=1)
    sample_rows: int = Field(default=20_000, ge=1000)
    drift_share: float = Field(default=0.5, gt=0, le=1)
    max_unseen_share: float = Field(default=0.05, ge=0, le=1)
    max_label_shift: float = Field(default=0.1, ge=0, le=1)
    prediction_drift: bool = True
    # per-column drift thresholds: Evidently's defaults (fixed), or learned from the reference's own
    # day-to-day variation, never below the defaults (calibrated; ctloop.monitoring.calibration)
    thresholds: Literal["fixed", "calibrated"] = "calibrated"
    calibration_k: float = Field(default=3.0, gt=0)  # threshold = mean + k * std of the chunk-vs-rest scores
    # a column's null share rising this much above the reference's (and beyond chance) is drift Evidently
    # cannot see: it drops nulls before its tests
    max_null_share_increase: float = Field(default=0.1, gt=0, le=1)
    per_column: dict[str, ColumnDriftRule] = Field(default_factory=dict)
    # roc_auc | f1_score | accuracy_score (binary); r2_score | root_mean_squared_error | mean_absolute_error
    # (regression, default r2_score)
    quality_metric: str = "roc_auc"
    max_quality_drop: float = Field(default=0.05, ge=0)
    min_labeled_rows: int = Field(default=300, ge=1)
    cooldown_hours: float = Field(default=48, ge=0)
    min_drift_days: int = Field(default=3, ge=1)


SuiteName = Literal["golden", "behavioural", "adversarial", "budgets", "shadow"]
SUITES: tuple[str, ...] = ("golden", "behavioural", "adversarial", "budgets", "shadow")
Scalar = float | int | str | None


def _all_suites() -> list[SuiteName]:
    return ["golden", "behavioural", "adversarial", "budgets", "shadow"]


class GoldenSpec(_Strict):
    path: str = "great_expectations/golden/cases.jsonl"  # relative to the project directory
    min_pass_rate: float = Field(default=0.95, ge=0, le=1)
    allowed_flips: list[str] = Field(default_factory=list)  # case ids the challenger may get wrong
    tolerance: float = Field(default=0.0, ge=0)  # regression: |predicted - expected| allowed (a case may set its own)


class InvarianceCheck(_Strict):
    column: str
    values: list[Scalar] = Field(min_length=1)
    max_score_change: float = Field(default=0.05, ge=0)
    max_flip_share: float = Field(default=0.01, ge=0, le=1)  # share of rows whose decision may change


class DirectionalCheck(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    column: str
    change: float
    expect: Literal["increase", "decrease"]
    target_class: int | None = Field(default=None, alias="class")  # multiclass: whose probability moves
    tolerance: float = Field(default=0.01, ge=0)  # no row may move the other way by more
    min_effect: float = Field(default=0.005, ge=0)  # the mean move in the expected direction


class MinimumCase(_Strict):
    name: str
    features: dict[str, Scalar]
    expect: float  # the class (binary), or the value (regression) within `tolerance`
    tolerance: float = Field(default=0.0, ge=0)


class BehaviouralSpec(_Strict):
    sample_rows: int = Field(default=500, ge=10)
    invariance: list[InvarianceCheck] = Field(default_factory=list)
    directional: list[DirectionalCheck] = Field(default_factory=list)
    minimum_functionality: list[MinimumCase] = Field(default_factory=list)


class AdversarialSpec(_Strict):
    batch_rows: int = Field(default=100_000, ge=1)
    long_text: int = Field(default=10_000, ge=1)


class BudgetSpec(_Strict):
    """Latency and throughput are judged against the champion, measured in the same process, interleaved:
    a ratio does not depend on how busy the machine is. The absolute figures are recorded and held only to
    sanity caps (an absolute budget passes a model on an idle machine and fails it on a busy one)."""

    max_p99_ratio: float = Field(default=3.0, ge=1)  # single-row p99 at most this many times the champion's
    min_throughput_ratio: float = Field(default=0.33, gt=0, le=1)  # batch rows/s at least this share of it
    p99_latency_ms: float = Field(default=1000, gt=0)  # sanity cap
    latency_samples: int = Field(default=100, ge=10)  # single rows timed per model
    min_rows_per_second: float = Field(default=1000, gt=0)  # sanity floor
    throughput_rows: int = Field(default=10_000, ge=100)  # the batch timed (best of three) for throughput
    max_model_mb: float = Field(default=50, gt=0)
    max_brier_regression: float = Field(default=0.01, ge=0)
    max_ece_regression: float = Field(default=0.02, ge=0)


class ShadowSpec(_Strict):
    hours: int = Field(default=24, ge=1)
    min_rows: int = Field(default=200, ge=1)
    min_agreement: float = Field(default=0.9, ge=0, le=1)
    max_mean_score_shift: float = Field(default=0.1, ge=0)
    quality_tolerance: float = Field(default=0.01, ge=0)  # labeled replay: challenger may trail by this


class EvaluationSpec(_Strict):
    suites: list[SuiteName] = Field(default_factory=_all_suites)
    threshold: float = Field(default=0.5, gt=0, lt=1)  # score at which the decision is "escalate"
    golden: GoldenSpec = GoldenSpec()
    behavioural: BehaviouralSpec = BehaviouralSpec()
    adversarial: AdversarialSpec = AdversarialSpec()
    budgets: BudgetSpec = BudgetSpec()
    shadow: ShadowSpec = ShadowSpec()


class RollbackPolicy(_Strict):
    """Automatic rollback while a new champion bakes: its labeled quality against what ``previous`` had."""

    enabled: bool = True
    bake_days: int = Field(default=3, ge=0)  # monitoring windows after a promotion that are judged
    max_quality_drop: float = Field(default=0.05, ge=0)
    comparable_windows: int = Field(default=7, ge=1)  # the previous champion's last labeled windows
    min_labeled_rows: int = Field(default=300, ge=1)


# the staged rollout's analysis metrics and whether lower values are better (ctloop.decisions.rollout)
ROLLOUT_METRICS: dict[str, bool] = {
    "error_rate_increase": True,  # candidate error rate minus the champion's, over the step
    "p99_ratio": True,            # candidate p99 latency / the champion's
    "score_distance": True,       # Wasserstein distance between the two routes' score distributions (in stds)
    "decision_agreement": False,  # share of the step's requests on which candidate and champion decide alike
    "quality_drop": True,         # champion's labeled quality minus the candidate's (worse: positive)
    # LLM apps (ctloop.core.apps): a prompt version's rollout
    "tokens_ratio": True,           # candidate tokens per request / the champion's
    "refusal_rate_increase": True,  # candidate refusal rate minus the champion's
}


class MetricCondition(_Strict):
    """One analysis metric, in the way of Argo Rollouts' AnalysisTemplate: a measurement worse than
    ``failure`` fails; more than ``failure_limit`` failed measurements fail the step; the step succeeds on
    this metric when its latest measurement is at or better than ``success``. Between the two: not yet."""

    success: float
    failure: float
    failure_limit: int = Field(default=0, ge=0)


class RolloutStep(_Strict):
    weight: float = Field(gt=0, le=1)  # share of request keys routed to @candidate (sticky per key)
    min_requests: int = Field(default=200, ge=1)  # candidate requests before the step is measured
    min_seconds: float = Field(default=60, ge=0)  # and time on the step
    timeout_seconds: float = Field(default=3600, gt=0)  # undecided by then: Inconclusive (paused for a person)
    require_labels: bool = False  # the step needs labeled quality (quality_drop measured)
    min_labeled: int = Field(default=50, ge=1)


def _default_steps() -> list[RolloutStep]:
    return [RolloutStep(weight=w) for w in (0.05, 0.25, 0.5, 1.0)]


def _default_analysis() -> dict[str, MetricCondition]:
    return {"error_rate_increase": MetricCondition(success=0.005, failure=0.02),
            "p99_ratio": MetricCondition(success=1.5, failure=3.0),
            # the routes serve different keys: the same model measured about 0.1 apart on 60-300 requests a side
            # (tests/integration/test_rollout.py), so 0.1 would leave a good candidate waiting for its timeout
            "score_distance": MetricCondition(success=0.2, failure=0.4, failure_limit=1),
            "decision_agreement": MetricCondition(success=0.9, failure=0.75, failure_limit=1),
            "quality_drop": MetricCondition(success=0.02, failure=0.05)}


class RolloutSpec(_Strict):
    steps: list[RolloutStep] = Field(default_factory=_default_steps)
    interval_seconds: float = Field(default=30, gt=0)  # between two measurements of a step once it has its minimums
    analysis: dict[str, MetricCondition] = Field(default_factory=_default_analysis)

    @model_validator(mode="after")
    def _steps_and_conditions(self) -> RolloutSpec:
        weights = [s.weight for s in self.steps]
        if not weights or weights[-1] != 1.0 or any(b <= a for a, b in itertools.pairwise(weights)):
            raise ValueError(f"steps: weights must rise and end at 1.0 (got {weights})")
        for name, rule in self.analysis.items():
            if name not in ROLLOUT_METRICS:
                raise ValueError(f"analysis.{name}: not a rollout metric (use {', '.join(ROLLOUT_METRICS)})")
            lower = ROLLOUT_METRICS[name]
            if (rule.success > rule.failure) if lower else (rule.success < rule.failure):
                raise ValueError(f"analysis.{name}: success {rule.success} must be "
                                 f"{'at or below' if lower else 'at or above'} failure {rule.failure}")
        return self


class PromotionSpec(_Strict):
    # rollout (the default, issue 20): a passing challenger that would replace a champion becomes
    # @candidate and earns its traffic through rollout.steps (the first champion still goes straight in);
    # auto: it replaces the champion at once; manual: it waits for a person's approval
    mode: Literal["auto", "manual", "rollout"] = "rollout"
    rollback: RollbackPolicy = RollbackPolicy()
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)  # the analysis of a staged rollout (issue 20)


class CanarySpec(_Strict):
    alias: Literal["challenger", "candidate"] = "challenger"
    fraction: float = Field(default=0.0, ge=0, le=1)  # share of request keys routed to the alias


class ServingShadowSpec(_Strict):
    enabled: bool = False
    alias: Literal["challenger", "candidate"] = "challenger"


class CanaryGuardSpec(_Strict):
    """The canary is stopped when, over the last ``window`` requests of each route, its error rate exceeds
    the champion's by more than ``max_error_rate_increase`` or its p99 latency exceeds both
    ``max_p99_ratio`` x and ``min_p99_increase_ms`` + the champion's."""

    window: int = Field(default=500, ge=10)
    min_requests: int = Field(default=100, ge=1)
    max_error_rate_increase: float = Field(default=0.01, ge=0, le=1)
    max_p99_ratio: float = Field(default=3.0, ge=1)
    min_p99_increase_ms: float = Field(default=20.0, ge=0)


class BatchingSpec(_Strict):
    max_batch: int = Field(default=256, ge=1)
    max_wait_ms: float = Field(default=0.0, ge=0, le=50)  # 0: score whatever is queued, never wait


class PredictionLogSpec(_Strict):
    flush_seconds: float = Field(default=1.0, gt=0)
    flush_rows: int = Field(default=20_000, ge=1)
    max_queue_rows: int = Field(default=200_000, ge=1)  # beyond this, rows are dropped and counted


class BlueGreenSpec(_Strict):
    # @previous stays loaded and warmed up in every server for this long after the server first sees it
    # (0: off), so a rollback right after a promotion is a switch of references, not a load
    keep_warm_seconds: float = Field(default=86_400, ge=0)


class ServingSpec(_Strict):
    poll_seconds: float = Field(default=5.0, gt=0)  # registry aliases and the routes file
    compiled: bool = True  # serve linear pipelines through the verified compiled path (ctloop.estimators.compiled)
    # threads of the scoring thread's OpenMP/BLAS pools (none: the libraries' default, every core); one keeps
    # a small call small (scale out with replicas or uvicorn workers)
    threads: int | None = Field(default=1, ge=1)
    onnx: bool = True  # serve other pipelines through ONNX Runtime when it reproduces them (ctloop.estimators.onnx)
    max_records: int = Field(default=10_000, ge=1)  # per request
    max_body_bytes: int = Field(default=10 * 2**20, ge=1024)  # larger bodies: 413
    max_text_length: int = Field(default=1_000, ge=1)  # characters of a category value: longer is a 422
    max_document_length: int = Field(default=10_000, ge=1)  # characters of a `type: text` value: longer is a 422
    feedback_memory: int = Field(default=500_000, ge=2)  # answered request ids /feedback recognises (~60 B each)
    canary: CanarySpec = CanarySpec()
    shadow: ServingShadowSpec = ServingShadowSpec()
    guard: CanaryGuardSpec = CanaryGuardSpec()
    blue_green: BlueGreenSpec = BlueGreenSpec()
    batching: BatchingSpec = BatchingSpec()
    log: PredictionLogSpec = PredictionLogSpec()


AlertEvent = Literal["task_failure", "quarantine", "validation_warning", "gate_rejection", "drift_trigger", "rollback",
                     "canary_stop", "rollout_abort", "rollout_pause"]


class AlertsSpec(_Strict):
    """Where alerts go: one Airflow connection (http, slackwebhook or smtp); see ``ctloop.airflow_edge``."""

    conn_id: str = "ctloop_alerts"
    events: list[AlertEvent] = Field(default_factory=lambda: list(get_args(AlertEvent)))
    timeout_seconds: float = Field(default=10, gt=0)
    attempts: int = Field(default=2, ge=1, le=10)
    retry_delay_seconds: float = Field(default=2, ge=0)


class LabelsSpec(_Strict):
    """Delayed ground truth from a real system: a file per day (``path`` with ``{ds}``, Parquet or CSV)
    ingested by ``<model>__labels`` / ``ctloop labels ingest``, and ``POST /feedback`` on ``ctloop serve``.
    Both land in ``labels/dt=<day the labels arrived>/``, which the monitor joins on the request id."""

    path: str | None = None  # e.g. "data/labels/dt={ds}/*.parquet"; none: labels come through /feedback only
    id_column: str = "request_id"
    label_column: str = "label"
    time_column: str = "labeled_at"  # optional in a file: the arrival day's start when missing
    schedule: str = "0 0 * * *"  # daily: each data interval is one arrival day


class Params(_Strict):
    dataset: DatasetSpec
    # the owning team: its Airflow role (team_<owner>) edits and triggers this model's DAGs (FAB DAG-level
    # access_control), its MLflow user edits this model's registered model and experiment (ctloop owners)
    owner: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    source: SourceSpec = SourceSpec()
    validation: ValidationSpec
    schedule: ScheduleSpec = ScheduleSpec()
    training: TrainingSpec
    gate: GateSpec = GateSpec()  # no gate.metrics: the task's DEFAULT_GATE
    monitoring: MonitoringSpec = MonitoringSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    promotion: PromotionSpec = PromotionSpec()
    serving: ServingSpec = ServingSpec()
    labels: LabelsSpec = LabelsSpec()
    alerts: AlertsSpec = AlertsSpec()

    @model_validator(mode="after")
    def _task_defaults(self) -> Params:
        """Fill what depends on ``dataset.task`` and was not set, and refuse metrics of another task."""
        task = self.dataset.task
        tp = self.training
        if tp.model == "logistic_regression" and "model" not in tp.model_fields_set and task == "regression":
            object.__setattr__(self, "training", tp.model_copy(update={"model": "ridge"}))
        elif tp.model not in (*BUILT_IN_MODELS_BY_TASK[task], "custom"):
            raise ValueError(f"training.model: {tp.model} is not a {task} model (use "
                             f"{', '.join(BUILT_IN_MODELS_BY_TASK[task])} or training.estimator)")
        known = set(task_metrics(task))
        metrics = dict(self.gate.metrics) or {k: MetricPolicy.model_validate(v) for k, v in DEFAULT_GATE[task].items()}
        for name, rule in metrics.items():
            if rule.greater_is_better is None:
                if name not in GREATER_IS_BETTER:
                    raise ValueError(f"gate.metrics.{name}: greater_is_better is required for a metric ctloop "
                                     f"does not know (it knows {', '.join(sorted(GREATER_IS_BETTER))})")
                metrics[name] = rule.model_copy(update={"greater_is_better": GREATER_IS_BETTER[name]})
            if name in GREATER_IS_BETTER and name not in known:
                raise ValueError(f"gate.metrics.{name}: not a metric of a {task} model "
                                 f"(use {', '.join(task_metrics(task))})")
        slices = self.gate.slices
        if "metric" not in slices.model_fields_set:
            slices = slices.model_copy(update={"metric": DEFAULT_QUALITY[task]})
        elif slices.metric not in known:
            raise ValueError(f"gate.slices.metric: {slices.metric!r} is not a metric of a {task} model "
                             f"(use {', '.join(task_metrics(task))})")
        object.__setattr__(self, "gate", self.gate.model_copy(update={"metrics": metrics, "slices": slices}))
        for i, d in enumerate(self.evaluation.behavioural.directional):
            if task == "multiclass" and d.target_class not in self.dataset.classes:
                raise ValueError(f"evaluation.behavioural.directional.{i}.class: a multiclass check names the class "
                                 f"whose probability should move, one of {self.dataset.classes}")
        m = self.monitoring
        if "quality_metric" not in m.model_fields_set:
            object.__setattr__(self, "monitoring", m.model_copy(update={"quality_metric": DEFAULT_QUALITY[task]}))
        elif m.quality_metric not in QUALITY_METRICS[task]:
            raise ValueError(f"monitoring.quality_metric: {m.quality_metric!r} is not a quality metric of a {task} "
                             f"model (use {', '.join(QUALITY_METRICS[task])})")
        return self


def _format_error(path: Path, err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{path}: {key}: {msg}{more}" if key else f"{path}: {msg}{more}"  # a whole-file check names its key




def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, mapping by mapping (a list or a value replaces; ``null`` keeps nothing)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# libyaml's safe loader when PyYAML was built with it: the same documents, about 10x faster (the DAG factory
# reads every model's spec at each parse)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        raw = yaml.load(path.read_text(), Loader=_LOADER)
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: {what} not found") from e
    except IsADirectoryError as e:
        raise ConfigError(f"{path}: {what} is a directory, not a YAML file") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    if raw is None and what == "shared defaults":
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def read_spec(path: Path) -> dict[str, Any]:
    """A model spec as one mapping: the shared defaults (``_defaults.yaml`` beside the spec, when there is
    one) with the spec's own keys on top. A spec in a models folder is named by its file: ``dataset.name``
    defaults to the file's stem, and what each model must own defaults from the name (the MLflow
    experiments and registered model, the two GX suites, the golden set), so that adding a model is adding
    one file."""
    defaults_path = path.parent / DEFAULTS_FILE
    if path.name == DEFAULTS_FILE:
        raise ConfigError(f"{path}: the shared defaults are not a model spec")
    spec = _read_yaml(path, "model spec")
    if not defaults_path.is_file():
        return spec
    raw = _merge(_read_yaml(defaults_path, "shared defaults"), spec)
    name = path.stem
    dataset = raw.get("dataset")
    if isinstance(dataset, dict):
        given = dataset.setdefault("name", name)
        if given != name:
            raise ConfigError(f"{path}: dataset.name: {given!r} must be the file's name {name!r} (a model is "
                              f"named by its spec file)")
    for section, key, value in (("training", "registered_model", name), ("training", "experiment", f"ctloop-{name}"),
                                ("training", "suite", f"{name}_training_set"), ("validation", "suite", f"{name}_batch"),
                                ("monitoring", "experiment", f"ctloop-{name}-monitoring")):
        part = raw.setdefault(section, {})
        if isinstance(part, dict):
            part.setdefault(key, value)
    evaluation = raw.setdefault("evaluation", {})
    golden = evaluation.setdefault("golden", {}) if isinstance(evaluation, dict) else None
    if isinstance(golden, dict):  # each model's own reviewed cases (none yet: the golden suite is skipped)
        golden.setdefault("path", f"great_expectations/golden/{name}.jsonl")
    return raw


def spec_text(path: Path) -> str:
    """The spec as resolved over the shared defaults, as YAML: what lineage stores and hashes."""
    return yaml.safe_dump(read_spec(path), sort_keys=False)


def load_params(path: Path) -> Params:
    """Read and check one model's spec (with the shared defaults beside it); every problem is a
    :class:`ConfigError` naming the file and key."""
    raw = read_spec(path)
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_error(path, e)) from e


def get_params() -> Params:
    from ctloop.core.settings import get_settings

    return load_params(get_settings().spec_path)


def load_specs(settings: Settings, only: str | None = None) -> tuple[dict[str, Params], dict[str, str]]:
    """Every model's checked spec, and the error of each spec that does not validate (``only``: just that
    model). A broken spec never hides the others: the DAG factory and ``ctloop owners`` list the rest."""
    specs: dict[str, Params] = {}
    broken: dict[str, str] = {}
    for name in settings.model_names():
        if only is not None and name != only:
            continue
        try:
            specs[name] = load_params(settings.for_model(name).spec_path)
        except ConfigError as e:
            broken[name] = str(e)
    return specs, broken
