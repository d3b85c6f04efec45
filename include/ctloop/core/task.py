"""What a model is asked to do (``dataset.task``), and what follows from it: which metrics judge it, which
way each metric is better, and what the loop calls the model's output.

``binary``: the output is the positive class's probability (the *score*); the decision is
``score >= evaluation.threshold``. ``multiclass``: the output is one probability per class of ``classes``;
the prediction is the most probable class and the score its probability (the log keeps every class's as
``proba_<class>``). ``regression``: the output is the predicted value; it is both the score and the
prediction. Every metric name is MLflow's (``mlflow.models.evaluate``), so the gate, the registry
and the MLflow UI show the same figures.
"""

from __future__ import annotations

from typing import Literal

Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[str, ...] = ("binary", "multiclass", "regression")

# direction of every metric ctloop knows; another metric in gate.metrics needs its greater_is_better
GREATER_IS_BETTER: dict[str, bool] = {
    # binary (MLflow's classifier evaluator, plus ctloop's calibration figures)
    "roc_auc": True, "f1_score": True, "precision_score": True, "recall_score": True, "accuracy_score": True,
    "precision_recall_auc": True, "log_loss": False, "brier_score": False, "ece": False,
    # multiclass (MLflow's classifier evaluator averages F1/precision/recall weighted; ctloop adds macro F1)
    "f1_macro": True, "f1_weighted": True,
    # regression (MLflow's regressor evaluator)
    "r2_score": True, "root_mean_squared_error": False, "mean_absolute_error": False, "mean_squared_error": False,
    "mean_absolute_percentage_error": False, "max_error": False,
}

# the metrics of each task that the evaluation keeps (MLflow logs them all to the run either way)
HEADLINE: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "f1_score", "precision_score", "recall_score", "log_loss", "accuracy_score",
               "precision_recall_auc"),
    "multiclass": ("accuracy_score", "f1_score", "precision_score", "recall_score", "log_loss", "roc_auc"),
    "regression": ("root_mean_squared_error", "mean_absolute_error", "r2_score", "mean_squared_error",
                   "mean_absolute_percentage_error", "max_error"),
}
# ctloop's own figures beside MLflow's (multiclass also logs recall_class_<c> per class: gate them with
# an explicit greater_is_better: true)
EXTRA: dict[str, tuple[str, ...]] = {"binary": ("brier_score", "ece"), "multiclass": ("f1_macro", "f1_weighted"),
                                     "regression": ()}

# what labeled quality (concept drift, rollback, shadow replay and slices) is measured with, per task
QUALITY_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "f1_score", "accuracy_score"),
    "multiclass": ("f1_macro", "accuracy_score"),
    "regression": ("r2_score", "root_mean_squared_error", "mean_absolute_error"),
}
DEFAULT_QUALITY: dict[str, str] = {"binary": "roc_auc", "multiclass": "f1_macro", "regression": "r2_score"}

# the gate a params file gets when it sets no gate.metrics: floors are the user's to set, these only
# keep a challenger from being worse than the champion beyond a tolerance
DEFAULT_GATE: dict[str, dict[str, dict[str, float | bool]]] = {
    "binary": {"roc_auc": {"tolerance": 0.01}, "log_loss": {"tolerance": 0.02}},
    "multiclass": {"f1_macro": {"tolerance": 0.01}, "log_loss": {"tolerance": 0.02}},
    "regression": {"r2_score": {"threshold": 0.0, "tolerance": 0.01}, "root_mean_squared_error": {}},
}


def proba_columns(classes: list[int]) -> list[str]:
    """A multiclass model's per-class probabilities, as the prediction log and the reference sample name them."""
    return [f"proba_{c}" for c in classes]


def task_metrics(task: str) -> tuple[str, ...]:
    """Every metric the evaluation of a ``task`` model produces."""
    return HEADLINE[task] + EXTRA[task]


def worse_by(metric: str, reference: float, value: float) -> float:
    """How much worse ``value`` is than ``reference`` on ``metric`` (positive: worse), in the metric's units."""
    return reference - value if GREATER_IS_BETTER.get(metric, True) else value - reference


def is_classifier(task: str) -> bool:
    return task != "regression"
