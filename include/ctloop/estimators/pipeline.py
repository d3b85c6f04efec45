"""The scikit-learn pipeline a model version is trained from.

By default it is built from the dataset contract: impute + scale numeric columns, impute + one-hot categorical
columns (unknown categories ignored), then a built-in model (``training.model``). A team brings its own code
two ways, both recorded in the lineage so ``ctloop reproduce`` rebuilds the same thing:

- ``training.estimator: {class: "sklearn.ensemble.RandomForestClassifier", params: {...}}``: any
  scikit-learn-compatible class importable here replaces the model step;
- ``training.pipeline: "my_package.features:build"``: a function that receives the dataset contract and
  returns an unfitted pipeline, feature engineering included (with ``training.estimator`` set too, the
  estimator replaces that pipeline's last step).

Hyperparameter overrides (the retrain form, ``ctloop train --hp``) are scikit-learn's ``set_params`` names:
``C`` or ``n_estimators`` for the model step, ``features__numeric__impute__strategy`` for any other step.
Every problem is one :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.core.errors import ConfigError
from ctloop.core.params import BUILT_IN_MODELS_BY_TASK

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from ctloop.core.params import DatasetSpec, TrainingSpec

MODELS = ("logistic_regression", "hist_gradient_boosting", "ridge")
MODEL_STEP = "model"


@dataclass(frozen=True)
class CodeRecord:
    """Where a piece of the pipeline's code came from: its module file's SHA-256 and, when the module belongs
    to an installed distribution, that distribution's version (what reproduction needs to find it again)."""

    module: str
    file: str | None
    sha256: str | None
    distribution: str | None = None
    version: str | None = None

    @property
    def requirement(self) -> str | None:
        return f"{self.distribution}=={self.version}" if self.distribution and self.version else None


@dataclass(frozen=True)
class ModelConfig:
    """What was trained, as ``lineage/train_config.json`` records it."""

    model: str  # a built-in name, or "custom"
    label: str  # what the run is called after: the built-in name, the estimator's class, the pipeline function
    hyperparameters: dict[str, Any]
    seed: int
    estimator: dict[str, Any] | None = None  # {"class": ..., "params": ...}
    pipeline: str | None = None
    code: list[CodeRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def requirements(self) -> list[str]:
        return sorted({r for c in self.code if (r := c.requirement) and not r.startswith("ctloop==")})

    @property
    def code_paths(self) -> list[str]:
        """Project code outside any installed distribution, to ship with the model (MLflow ``code_paths``)."""
        paths = set()
        for c in self.code:
            if c.distribution is None and c.file:
                top = c.module.split(".")[0]
                file = Path(c.file)
                package = next((p for p in file.parents if p.name == top and (p / "__init__.py").exists()), None)
                paths.add(str(package or file))
        return sorted(paths)


def as_text(values: Any) -> Any:
    """A text column as the vectoriser takes it: one string per row, a missing value as the empty string."""
    import numpy as np

    flat = np.asarray(values, dtype=object).reshape(-1)
    return np.array(["" if v is None or (isinstance(v, float) and v != v) else str(v) for v in flat], dtype=object)


def default_pipeline(contract: DatasetSpec, estimator: Any, text_max_features: int = 300) -> Pipeline:
    """Numbers imputed and scaled, categories imputed and one-hot encoded, each text column TF-IDF vectorised
    over at most ``text_max_features`` words and word pairs (a bounded vocabulary: the model's size and its
    serving cost do not grow with the text). Dense output: every estimator takes it."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline([
        ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
    ])
    text = [(f"text_{c}", Pipeline([("as_text", FunctionTransformer(as_text)),
                                      ("tfidf", TfidfVectorizer(max_features=text_max_features, ngram_range=(1, 2),
                                                                sublinear_tf=True, dtype=np.float64))]), [c])
            for c in contract.text_features]
    features = ColumnTransformer(
        [("numeric", numeric, contract.numeric_features),
         ("categorical", categorical, contract.categorical_features), *text],
        remainder="drop", sparse_threshold=0.0,
    )
    return Pipeline([("features", features), (MODEL_STEP, estimator)])


def _builtin(model: str, hyperparameters: dict[str, Any], seed: int, task: str = "binary") -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge

    if model in MODELS and model not in BUILT_IN_MODELS_BY_TASK[task]:
        raise ConfigError(f"training.model: {model} is not a {task} model; expected one of "
                          f"{', '.join(BUILT_IN_MODELS_BY_TASK[task])} or custom")
    if model == "logistic_regression":
        return LogisticRegression(random_state=seed, **hyperparameters)
    if model == "ridge":
        return Ridge(random_state=seed, **hyperparameters)
    if model == "hist_gradient_boosting":
        cls = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
        return cls(random_state=seed, **hyperparameters)
    raise ConfigError(f"training.model: unknown model {model!r}; expected one of {', '.join(MODELS)} or custom")


def import_object(path: str, key: str) -> Any:
    """``package.module:name`` or ``package.module.Name`` -> the object, or a ConfigError naming ``key``."""
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"{key}: cannot import module {module_name!r} ({e}); put it in the project's include/ "
                          f"or install its package") from e
    except Exception as e:  # the user's module failed while importing
        raise ConfigError(f"{key}: importing {module_name!r} raised {type(e).__name__}: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError as e:
        raise ConfigError(f"{key}: module {module_name!r} has no {attr!r}") from e


def code_record(obj: Any) -> CodeRecord:
    return module_record(getattr(obj, "__module__", None) or type(obj).__module__)


def module_record(module_name: str) -> CodeRecord:
    """The module's file, its SHA-256, and the installed distribution it comes from (none for project code)."""
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    try:
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
    except Exception:
        return CodeRecord(module_name, None, None)
    try:
        source = inspect.getsourcefile(module) if module is not None else None
    except TypeError:  # a built-in or extension module
        source = None
    digest = hashlib.sha256(Path(source).read_bytes()).hexdigest() if source and Path(source).exists() else None
    top = module_name.split(".")[0]
    dists = packages_distributions().get(top, [])
    dist = dists[0] if dists else None
    # a module under the project's include/ belongs to the editable ctloop install only by path: it is project code
    if dist == "ctloop" and top != "ctloop":
        dist = None
    try:
        dist_version = version(dist) if dist else None
    except PackageNotFoundError:
        dist, dist_version = None, None
    return CodeRecord(module_name, source, digest, dist, dist_version)


def _check_estimator(obj: Any, key: str, what: str, task: str = "binary") -> None:
    from sklearn.base import is_classifier

    missing = [m for m in ("fit", "predict") if not callable(getattr(obj, m, None))]
    if missing:
        raise ConfigError(f"{key}: {what} has no {' or '.join(missing)}(); ctloop needs a scikit-learn-compatible "
                          f"estimator")
    if task == "regression":
        if is_classifier(obj):
            raise ConfigError(f"{key}: {what} is a classifier; dataset.task is regression (use a regressor, e.g. "
                              f"sklearn.ensemble.RandomForestRegressor)")
        return
    if not hasattr(obj, "predict_proba"):
        raise ConfigError(f"{key}: {what} has no predict_proba(); a classifier must give probabilities (wrap it "
                          f"in sklearn.calibration.CalibratedClassifierCV)")


def _custom_estimator(spec: TrainingSpec, seed: int, task: str = "binary") -> tuple[Any, CodeRecord]:
    assert spec.estimator is not None
    key = "training.estimator.class"
    cls = import_object(spec.estimator.class_path, key)
    if not inspect.isclass(cls):
        raise ConfigError(f"{key}: {spec.estimator.class_path} is not a class")
    params = dict(spec.estimator.params)
    try:
        accepted = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        accepted = {}  # type: ignore[assignment]
    if "random_state" in accepted and "random_state" not in params:
        params["random_state"] = seed  # the run's seed, as for the built-in models
    try:
        estimator = cls(**params)
    except Exception as e:
        raise ConfigError(f"training.estimator.params: {spec.estimator.class_path}: {e}") from e
    _check_estimator(estimator, key, spec.estimator.class_path, task)
    return estimator, code_record(cls)


def _user_pipeline(spec: TrainingSpec, contract: DatasetSpec) -> tuple[Any, CodeRecord]:
    assert spec.pipeline is not None
    build = import_object(spec.pipeline, "training.pipeline")
    if not callable(build):
        raise ConfigError(f"training.pipeline: {spec.pipeline} is not a function")
    try:
        pipeline = build(contract)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"training.pipeline: {spec.pipeline}(contract) raised {type(e).__name__}: {e}") from e
    if not callable(getattr(pipeline, "fit", None)) or not callable(getattr(pipeline, "predict", None)):
        raise ConfigError(f"training.pipeline: {spec.pipeline} returned a {type(pipeline).__name__}, not an "
                          f"unfitted scikit-learn-compatible pipeline (fit/predict)")
    return pipeline, code_record(build)


def _apply_overrides(pipeline: Any, overrides: dict[str, Any], key: str) -> None:
    """``C`` -> the model step's ``C``; ``features__numeric__impute__strategy`` as scikit-learn names it."""
    if not overrides:
        return
    steps = getattr(pipeline, "steps", None)
    last = steps[-1][0] if steps else None
    names = {(k if "__" in k or last is None else f"{last}__{k}"): v for k, v in overrides.items()}
    try:
        pipeline.set_params(**names)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{key}: {e}") from e


def build_model(contract: DatasetSpec, spec: TrainingSpec, model: str | None = None,
                hyperparameters: dict[str, Any] | None = None, seed: int | None = None) -> tuple[Pipeline, ModelConfig]:
    """The unfitted pipeline for ``model`` (default ``training.model``) and its record. ``hyperparameters``
    override the configured ones (``training.models.<name>`` or ``training.estimator.params``)."""
    name = model or spec.model
    run_seed = spec.seed if seed is None else seed
    overrides = dict(hyperparameters or {})
    if name in MODELS:
        hp = {**spec.models.get(name, {}), **overrides}  # type: ignore[call-overload]
        try:
            estimator = _builtin(name, hp, run_seed, contract.task)
        except TypeError as e:
            raise ConfigError(f"training.models.{name}: {e}") from e
        pipeline = default_pipeline(contract, estimator, spec.text_max_features)
        return pipeline, ModelConfig(name, name, hp, run_seed)
    if name != "custom":
        raise ConfigError(f"training.model: unknown model {name!r}; expected one of {', '.join(MODELS)} or custom")
    if spec.estimator is None and spec.pipeline is None:
        raise ConfigError("training.model: 'custom' needs training.estimator or training.pipeline in params.yaml")
    code: list[CodeRecord] = []
    estimator = None
    if spec.estimator is not None:
        estimator, record = _custom_estimator(spec, run_seed, contract.task)
        code.append(record)
    if spec.pipeline is not None:
        pipeline, record = _user_pipeline(spec, contract)
        code.append(record)
        if estimator is not None:
            steps = getattr(pipeline, "steps", None)
            if not steps:
                raise ConfigError(f"training.pipeline: {spec.pipeline} returned no Pipeline steps to put "
                                  f"training.estimator after")
            pipeline.steps[-1] = (steps[-1][0], estimator)
        _check_estimator(pipeline, "training.pipeline", f"the pipeline from {spec.pipeline}", contract.task)
    else:
        pipeline = default_pipeline(contract, estimator, spec.text_max_features)
    _apply_overrides(pipeline, overrides, "hyperparameters")
    label = spec.estimator.class_path.rsplit(".", 1)[1] if spec.estimator else str(spec.pipeline)
    return pipeline, ModelConfig("custom", label, overrides, run_seed,
                                 spec.estimator.model_dump(by_alias=True) if spec.estimator else None,
                                 spec.pipeline, code)


def build_pipeline(contract: DatasetSpec, model: str, hyperparameters: dict[str, Any] | None = None,
                   seed: int = 42) -> Pipeline:
    """A built-in model's pipeline (kept for callers that name one directly)."""
    return default_pipeline(contract, _builtin(model, dict(hyperparameters or {}), seed, contract.task))
