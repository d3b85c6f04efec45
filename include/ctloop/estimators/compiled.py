"""A compiled scoring path for linear pipelines: the registered scikit-learn pipeline folded into one
weight per numeric column and one weight per category, evaluated straight from the request records.

scikit-learn spends about 3.5 ms per ``predict_proba`` call on pandas and column-transformer overhead,
whatever the batch size; for imputer -> scaler / imputer -> one-hot -> logistic regression the same score is
``expit(b + sum(a_j * x_j) + sum(w[c][value]))``, a few microseconds per record. The compiled form is only
used after it reproduced ``predict_proba`` on a probe sample (:func:`verified`); any other pipeline (a
gradient-boosting model, an unsupported step or option) is served by scikit-learn itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from ctloop.core.params import DatasetSpec

Scorer = Callable[[list[dict[str, Any]]], "np.ndarray"]
TOLERANCE = 1e-9


class NotCompilable(Exception):
    """The pipeline has a step or option the compiler does not fold (it is served by scikit-learn)."""


def _feature_blocks(features: Any) -> list[tuple[str, list[str], Any, Any]]:
    """ctloop's feature steps, checked: ("numeric", columns, imputer, scaler) for imputer -> scaler and
    ("categorical", columns, imputer, encoder) for constant imputer -> one-hot, in output order; any other
    step or option is NotCompilable."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    blocks: list[tuple[str, list[str], Any, Any]] = []
    for _name, transformer, columns in features.transformers_:
        if transformer == "drop" or not len(columns):
            continue
        steps = transformer.steps if isinstance(transformer, Pipeline) else [("only", transformer)]
        kinds = [type(step) for _, step in steps]
        if kinds == [SimpleImputer, StandardScaler]:
            imputer, scaler = steps[0][1], steps[1][1]
            if imputer.add_indicator or len(imputer.statistics_) != len(columns):
                raise NotCompilable("imputer with indicator or dropped columns")
            blocks.append(("numeric", list(columns), imputer, scaler))
        elif kinds == [SimpleImputer, OneHotEncoder]:
            imputer, encoder = steps[0][1], steps[1][1]
            if (imputer.strategy != "constant" or imputer.add_indicator or encoder.drop is not None
                    or encoder.handle_unknown != "ignore" or getattr(encoder, "infrequent_categories_", None)):
                raise NotCompilable("one-hot encoding options the compiler does not fold")
            blocks.append(("categorical", list(columns), imputer, encoder))
        else:
            raise NotCompilable(f"transformer steps {[k.__name__ for k in kinds]}")
    return blocks


def compile_linear(model: Any, contract: DatasetSpec) -> Scorer:
    """A scorer equivalent to ``model.predict_proba(records_frame(records))[:, 1]``, or NotCompilable."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from ctloop.estimators.scoring import bounds

    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        raise NotCompilable("not a two-step Pipeline (features, model)")
    features, estimator = model.steps[0][1], model.steps[1][1]
    if not isinstance(features, ColumnTransformer) or not isinstance(estimator, LogisticRegression):
        raise NotCompilable("not ColumnTransformer -> LogisticRegression")
    if features.remainder != "drop" or estimator.coef_.shape[0] != 1 or len(estimator.classes_) != 2:
        raise NotCompilable("remainder columns or more than two classes")
    weights = estimator.coef_[0]
    bias = float(estimator.intercept_[0])
    numeric: list[tuple[str, float, float, float, float]] = []  # column, weight, fill, lo, hi
    categorical: list[tuple[str, dict[str, float], float]] = []  # column, weight per value, weight of "missing"
    position = 0
    for kind, columns, imputer, step in _feature_blocks(features):
        if kind == "numeric":
            for j, column in enumerate(columns):
                mean = float(step.mean_[j]) if step.mean_ is not None else 0.0
                scale = float(step.scale_[j]) if step.scale_ is not None else 1.0
                w = float(weights[position + j]) / scale
                bias -= w * mean
                numeric.append((column, w, float(imputer.statistics_[j]), *bounds(contract, column)))
            position += len(columns)
        else:
            for j, column in enumerate(columns):
                cats = [str(c) for c in step.categories_[j]]
                table = {c: float(weights[position + k]) for k, c in enumerate(cats)}
                position += len(cats)
                categorical.append((column, table, table.get(str(imputer.fill_value), 0.0)))
    if position != len(weights):
        raise NotCompilable(f"{position} folded features, the model has {len(weights)}")

    def score(records: list[dict[str, Any]]) -> np.ndarray:
        out = np.empty(len(records), dtype="float64")
        for i, r in enumerate(records):
            z = bias
            for column, w, fill, lo, hi in numeric:
                x = r.get(column)
                z += w * (fill if x is None else min(max(x, lo), hi))
            for column, table, missing in categorical:
                v = r.get(column)
                z += missing if v is None else table.get(str(v)[:1000], 0.0)
            out[i] = z
        return 1.0 / (1.0 + np.exp(-out))

    return score


def compile_features(model: Any, contract: DatasetSpec) -> Scorer:
    """A scorer equivalent to the pipeline's output for ctloop's feature steps (imputer -> scaler for numbers,
    constant imputer -> one-hot for categories) in front of any estimator: the features computed with NumPy
    from the records, then the estimator's own ``predict_proba``/``predict`` on the matrix. A tree ensemble
    (gradient boosting, which ONNX cannot take) keeps its exact trees and loses the pandas and
    column-transformer overhead, which is most of a one-row call."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    from ctloop.estimators.scoring import MAX_TEXT, bounds, model_output

    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        raise NotCompilable("not a two-step Pipeline (features, model)")
    features, estimator = model.steps[0][1], model.steps[1][1]
    if not isinstance(features, ColumnTransformer) or features.remainder != "drop":
        raise NotCompilable("not a ColumnTransformer without remainder columns")
    # (columns, fill, mean, scale, lo, hi) blocks and (column, index per value, index of the fill value) blocks
    numeric: list[tuple[list[str], Any, Any, Any, Any, Any, int]] = []
    categorical: list[tuple[str, dict[str, int], int | None, int]] = []
    width = 0
    for kind, columns, imputer, step in _feature_blocks(features):
        if kind == "numeric":
            k = len(columns)
            mean = step.mean_ if step.with_mean else np.zeros(k)
            scale = step.scale_ if step.with_std else np.ones(k)
            lo, hi = zip(*(bounds(contract, c) for c in columns), strict=True)
            numeric.append((columns, np.asarray(imputer.statistics_, dtype="float64"), mean, scale,
                            np.asarray(lo), np.asarray(hi), width))
            width += k
        else:
            for j, column in enumerate(columns):
                index = {str(c): width + i for i, c in enumerate(step.categories_[j])}
                categorical.append((column, index, index.get(str(imputer.fill_value)), width))
                width += len(index)
    if width != getattr(estimator, "n_features_in_", width):
        raise NotCompilable(f"{width} compiled features, the model takes {estimator.n_features_in_}")
    task, classes = contract.task, contract.classes

    def score(records: list[dict[str, Any]]) -> np.ndarray:
        x = np.zeros((len(records), width))
        for columns, fill, mean, scale, lo, hi, start in numeric:
            values = np.array([[r.get(c) for c in columns] for r in records], dtype="float64")
            values = np.where(np.isnan(values), fill, np.clip(values, lo, hi))
            x[:, start:start + len(columns)] = (values - mean) / scale
        for column, index, missing, _start in categorical:
            for i, r in enumerate(records):
                v = r.get(column)
                hit = missing if v is None else index.get(str(v)[:MAX_TEXT])
                if hit is not None:
                    x[i, hit] = 1.0
        return model_output(estimator, x, task, classes)

    return score


def verified_features(model: Any, contract: DatasetSpec) -> tuple[Scorer | None, str]:
    """The compiled-features scorer when it reproduces the pipeline within 1e-9 on the probe records."""
    import numpy as np

    from ctloop.estimators.scoring import predict_scores, records_frame

    try:
        compiled = compile_features(model, contract)
    except NotCompilable as e:
        return None, f"scikit-learn path: {e}"
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as e:
        return None, f"scikit-learn path: features not compiled ({type(e).__name__}: {e})"
    probe = probe_records(model, contract)
    expected = predict_scores(model, records_frame(probe, contract), contract.task, contract.classes)
    diff = float(np.max(np.abs(compiled(probe) - expected)))
    if not diff <= TOLERANCE:
        return None, f"scikit-learn path: compiled features differ by {diff:.2e} on the probe"
    return compiled, (f"compiled features -> {type(model.steps[-1][1]).__name__} (max difference {diff:.1e} on "
                      f"{len(probe)} probe records)")


def probe_records(model: Any, contract: DatasetSpec, n: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """Records that exercise every folded weight: numbers across and beyond the contract's bounds, every
    known category, unseen ones and missing values."""
    import numpy as np

    rng = np.random.default_rng(seed)
    known: dict[str, list[str]] = {}
    features = getattr(model, "steps", [[None, None]])[0][1]
    for _name, transformer, columns in getattr(features, "transformers_", []):
        encoder = getattr(transformer, "steps", [[None, transformer]])[-1][1]
        for j, column in enumerate(columns):
            if hasattr(encoder, "categories_"):
                known[column] = [str(c) for c in encoder.categories_[j]]
    records = []
    for i in range(n):
        r: dict[str, Any] = {}
        for column in contract.numeric_features:
            spec = contract.columns[column]
            lo = spec.min if spec.min is not None else -1000.0
            hi = spec.max if spec.max is not None else 1000.0
            r[column] = None if i % 17 == 3 else float(rng.uniform(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)))
        for column in contract.categorical_features:
            values = [*known.get(column, []), "never-seen", None]
            r[column] = values[int(rng.integers(len(values)))]
        records.append(r)
    return records


def verified(model: Any, contract: DatasetSpec) -> tuple[Scorer | None, str]:
    """The compiled scorer when it reproduces ``predict_proba`` within 1e-9 on the probe records, and why
    (not) it is used."""
    import numpy as np

    from ctloop.estimators.scoring import predict_scores, records_frame

    if contract.task != "binary":
        return None, f"scikit-learn path: only binary classifiers are compiled (dataset.task is {contract.task})"
    try:
        compiled = compile_linear(model, contract)
    except NotCompilable as e:
        return None, f"scikit-learn path: {e}"
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as e:
        return None, f"scikit-learn path: not compiled ({type(e).__name__}: {e})"
    probe = probe_records(model, contract)
    expected = predict_scores(model, records_frame(probe, contract))
    diff = float(np.max(np.abs(compiled(probe) - expected)))
    if not diff <= TOLERANCE:
        return None, f"scikit-learn path: compiled scores differ by {diff:.2e} on the probe"
    return compiled, f"compiled linear path (max difference {diff:.1e} on {len(probe)} probe records)"
