"""Serve any other pipeline through ONNX Runtime (skl2onnx): tree ensembles, forests, LightGBM-free pipelines.

scikit-learn spends milliseconds per ``predict_proba`` call on pandas and the column transformer, whatever the
batch; a forest converted to ONNX answers one record in about 0.15 ms. The conversion works on a surrogate
of the fitted pipeline: the imputers of the column transformer are applied while the request records are
turned into arrays (their fitted statistics, exactly), the rest is converted by skl2onnx; before a tree model a
cast to float32 repeats what scikit-learn's trees do to their input, so splits fall the same way.

Like the compiled linear path (:mod:`ctloop.estimators.compiled`), the converted model is only used after it
reproduced ``predict_proba`` on the probe records (numbers beyond the bounds, every known category, unseen
ones, missing values) within :data:`TOLERANCE`; anything it cannot convert or reproduce is served by
scikit-learn, and the reason is logged and shown on ``/ready``.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

from ctloop.estimators.compiled import NotCompilable, Scorer, probe_records

if TYPE_CHECKING:
    from ctloop.core.params import DatasetSpec

# ONNX Runtime sums a forest's trees in float32: about 1e-7 away from scikit-learn's float64 average
TOLERANCE = 1e-5
TREE_MODULES = ("sklearn.ensemble", "sklearn.tree", "lightgbm", "xgboost", "catboost")


def _prefill(transformer: Any, columns: list[str]) -> tuple[Any, dict[str, Any]]:
    """A transformer without its leading SimpleImputer, and the value each column's missing entries take."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    if isinstance(transformer, SimpleImputer):
        imputer, rest = transformer, "passthrough"
    elif isinstance(transformer, Pipeline) and isinstance(transformer.steps[0][1], SimpleImputer):
        imputer = transformer.steps[0][1]
        rest = "passthrough" if len(transformer.steps) == 1 else Pipeline(transformer.steps[1:])
    else:
        return transformer, {}
    if imputer.add_indicator:
        raise NotCompilable("an imputer with a missing-value indicator")
    missing = imputer.missing_values
    if not (missing is None or (isinstance(missing, float) and math.isnan(missing))):
        raise NotCompilable(f"an imputer for missing value {missing!r}")
    if len(imputer.statistics_) != len(columns):
        raise NotCompilable("an imputer that dropped a column")
    return rest, dict(zip(columns, imputer.statistics_.tolist(), strict=True))


def _surrogate(model: Any) -> tuple[Any, dict[str, Any]]:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline) or not isinstance(model.steps[0][1], ColumnTransformer):
        raise NotCompilable("not a Pipeline starting with a ColumnTransformer")
    features: ColumnTransformer = copy.deepcopy(model.steps[0][1])
    if features.remainder != "drop":
        raise NotCompilable("remainder columns")
    fills: dict[str, Any] = {}
    fitted = []
    for name, transformer, columns in features.transformers_:
        if transformer == "drop" or not len(columns):
            fitted.append((name, transformer, columns))
            continue
        if not all(isinstance(c, str) for c in columns):
            raise NotCompilable("columns selected by position")
        rest, fill = _prefill(transformer, list(columns))
        fills.update(fill)
        fitted.append((name, rest, columns))
    features.transformers_ = fitted
    final = model.steps[-1][1]
    steps: list[tuple[str, Any]] = [("features", features), *model.steps[1:-1]]
    if type(final).__module__.startswith(TREE_MODULES):
        import numpy as np
        from skl2onnx.sklapi import CastTransformer

        steps.append(("float32", CastTransformer(dtype=np.float32).fit(np.zeros((1, 1)))))
    steps.append(model.steps[-1])
    return Pipeline(steps), fills


def compile_onnx(model: Any, contract: DatasetSpec) -> Scorer:
    """A scorer equivalent to ``model.predict_proba(records_frame(records))[:, 1]``, or NotCompilable."""
    import numpy as np
    import onnxruntime as ort
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    from ctloop.estimators.scoring import record_columns

    surrogate, fills = _surrogate(model)
    numeric, categorical = list(contract.numeric_features), list(contract.categorical_features)
    types = [(c, DoubleTensorType([None, 1])) for c in numeric] + [(c, StringTensorType([None, 1])) for c in categorical]
    final = surrogate.steps[-1][1]
    try:
        onx = convert_sklearn(surrogate, initial_types=types, options={id(final): {"zipmap": False}},
                              target_opset={"": 17, "ai.onnx.ml": 3})
    except Exception as e:  # the converter's own limits (an unsupported step, option or library version)
        root: BaseException = e
        while root.__cause__ is not None or root.__context__ is not None:
            root = root.__cause__ or root.__context__  # type: ignore[assignment]
        why = str(root).splitlines()[0][:160] if str(root) else ""
        raise NotCompilable(f"skl2onnx cannot convert it ({type(root).__name__}: {why})") from e
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a request's few rows: threads cost more than they save
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(onx.SerializeToString(), options, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    if "probabilities" not in outputs:
        raise NotCompilable(f"the converted model has no probabilities output ({', '.join(outputs)})")
    numeric_fill = {c: float(fills.get(c, math.nan)) for c in numeric}
    text_fill = {c: str(fills[c]) if c in fills else "" for c in categorical}

    def score(records: list[dict[str, Any]]) -> np.ndarray:
        columns = record_columns(records, contract)  # clipped and cut exactly as on the scikit-learn path
        feed: dict[str, np.ndarray] = {}
        for c in numeric:
            values = columns[c]
            feed[c] = np.where(np.isnan(values), numeric_fill[c], values).reshape(-1, 1)
        for c in categorical:
            fill = text_fill[c]
            feed[c] = np.array([fill if v is None else v for v in columns[c]], dtype=object).reshape(-1, 1)
        return session.run(["probabilities"], feed)[0][:, 1].astype(np.float64)

    return score


def verified_onnx(model: Any, contract: DatasetSpec, tolerance: float = TOLERANCE) -> tuple[Scorer | None, str]:
    """The ONNX scorer when it reproduces ``predict_proba`` within ``tolerance`` on the probe records, and
    why (not) it is used."""
    import numpy as np

    from ctloop.estimators.scoring import predict_scores, records_frame

    if contract.task != "binary":
        return None, f"scikit-learn path: only binary classifiers are compiled (dataset.task is {contract.task})"
    try:
        scorer = compile_onnx(model, contract)
    except NotCompilable as e:
        return None, f"scikit-learn path: not converted to ONNX: {e}"
    except (ImportError, AttributeError, KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        return None, f"scikit-learn path: not converted to ONNX ({type(e).__name__}: {e})"
    probe = probe_records(model, contract)
    expected = predict_scores(model, records_frame(probe, contract))
    try:
        got = scorer(probe)
    except Exception as e:  # ONNX Runtime refused the probe
        return None, f"scikit-learn path: the ONNX model failed on the probe ({type(e).__name__}: {e})"
    diff = float(np.max(np.abs(got - expected)))
    if not diff <= tolerance:
        return None, f"scikit-learn path: ONNX scores differ by {diff:.2e} on the probe (tolerance {tolerance:g})"
    return scorer, f"ONNX Runtime path (max difference {diff:.1e} on {len(probe)} probe records)"
