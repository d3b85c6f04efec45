"""Bootstrap the batch expectation suite from reference data and the dataset contract.

The suite is generated once by ``ctloop suite build``, reviewed and committed; it is never regenerated
at run time. Tolerances come from ``params.yaml`` (``validation.*``).

Every expectation carries GX's own ``severity``. The contract is ``critical``: a failure quarantines the
batch. What the reference data taught (null shares, categories, observed ranges) comes twice: a
``warning`` at the warn level (the batch passes, the warning is recorded) and a ``critical`` one at the
fail level, so a season that moves a range past what two weeks of January showed is a warning, while a
unit bug (values orders of magnitude off) or a column going empty is a failure.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from ctloop.core.params import NUMERIC_TYPES

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.data_context import FileDataContext

    from ctloop.core.params import DatasetSpec, Params

# the largest finite float: a contract bound that still rejects ±inf
FINITE = 1.7976931348623157e308
INTERVAL_START = "interval_start"
INTERVAL_END = "interval_end"

TYPE_LISTS: dict[str, list[str]] = {
    # integer columns may arrive as float when they carry nulls (pandas), never as text
    "integer": ["int8", "int16", "int32", "int64", "Int8", "Int16", "Int32", "Int64", "uint8", "uint16",
                "uint32", "uint64", "float32", "float64", "Float64"],
    "float": ["float16", "float32", "float64", "Float32", "Float64", "int32", "int64", "Int64"],
    "categorical": ["object", "str", "string", "category", "StringDtype"],
    "string": ["object", "str", "string", "StringDtype"],
    "text": ["object", "str", "string", "StringDtype"],
    "boolean": ["bool", "boolean"],
    # validated as naive UTC (see ctloop.validation.run.validation_view): GX cannot match tz-aware dtypes
    "timestamp": ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"],
}


CRITICAL, WARNING = "critical", "warning"
Spec = tuple[str, dict[str, Any], dict[str, Any], str]  # (expectation class, kwargs, meta, severity)


def _band(lo: float, hi: float, pad: float, bounds: tuple[float, float], integer: bool) -> tuple[float, float]:
    a, b = max(lo - pad, bounds[0]), min(hi + pad, bounds[1])
    if integer:
        a, b = float(int(a // 1)), float(-(-b // 1))
    return round(a, 6), round(b, 6)


def _key(override: float | None, column: str, field: str, default: str) -> str:
    return f"dataset.columns.{column}.{field}" if override is not None else default


def _not_constant(name: str, values: pd.Series) -> list[Spec]:
    """A column that varied in the reference, with no dominant value (the most frequent under half the
    rows), turning constant is a broken feed: a failure. A column with a dominant value is not checked: a
    day without rain has precipitation 0 all day, and on a year of real flights that check warned on 227
    days of 365 (alert fatigue, not information)."""
    if values.nunique() < 2:
        return []
    top = float(values.value_counts(normalize=True).iloc[0])
    if top >= 0.5:
        return []
    return [("ExpectColumnUniqueValueCountToBeBetween", {"column": name, "min_value": 2},
             {"why": f"varied in the reference data (most frequent value {top:.0%} of rows): a constant batch "
                     "is a broken feed"}, CRITICAL)]


def expectation_specs(reference: pd.DataFrame, params: Params) -> list[Spec]:
    """(expectation class name, kwargs, meta, severity) for the batch suite; pure, so it is unit-testable."""
    ds, tol = params.dataset, params.validation
    specs: list[Spec] = [
        ("ExpectTableColumnsToMatchSet", {"column_set": list(ds.columns), "exact_match": True},
         {"why": "the contract's columns, no more, no fewer (catches renamed, missing and extra columns)"}, CRITICAL),
        ("ExpectTableRowCountToBeBetween", {"min_value": tol.min_rows, "max_value": tol.max_rows},
         {"why": "validation.min_rows/max_rows"}, CRITICAL),
        ("ExpectColumnValuesToBeUnique", {"column": ds.id}, {"why": "ids identify a row"}, CRITICAL),
        ("ExpectColumnValuesToBeBetween",
         {"column": ds.timestamp, "min_value": {"$PARAMETER": INTERVAL_START},
          "max_value": {"$PARAMETER": INTERVAL_END}, "strict_max": True},
         {"why": "every row belongs to the run's data interval (none after the time of the check)"}, CRITICAL),
        _target_domain(ds),
    ]
    for name, col in ds.columns.items():
        specs.append(("ExpectColumnValuesToBeInTypeList", {"column": name, "type_list": TYPE_LISTS[col.type]},
                      {"why": f"contract type {col.type}"}, CRITICAL))
        if not col.nullable:
            specs.append(("ExpectColumnValuesToNotBeNull", {"column": name}, {"why": "not nullable"}, CRITICAL))
        else:
            warn = col.null_warn_share if col.null_warn_share is not None else tol.null_tolerance
            fail = col.null_fail_share if col.null_fail_share is not None else tol.null_fail_share
            specs += [("ExpectColumnValuesToNotBeNull", {"column": name, "mostly": round(1 - share, 6)},
                       {"why": f"{key}: {level} above {share:.0%} nulls"}, level)
                      for key, share, level in ((_key(col.null_warn_share, name, "null_warn_share",
                                                      "validation.null_tolerance"), warn, WARNING),
                                                (_key(col.null_fail_share, name, "null_fail_share",
                                                      "validation.null_fail_share"), fail, CRITICAL))]
        if name == ds.target or name not in reference.columns:
            continue
        if col.type in NUMERIC_TYPES:
            bounds = (col.min if col.min is not None else -FINITE, col.max if col.max is not None else FINITE)
            specs.append(("ExpectColumnValuesToBeBetween", {"column": name, "min_value": bounds[0],
                                                            "max_value": bounds[1]},
                          {"why": "contract bounds from params.yaml; also rejects ±inf"}, CRITICAL))
            values = reference[name].astype("float64").dropna()
            if values.empty:
                continue
            obs_lo, obs_hi = float(values.min()), float(values.max())
            span = max(obs_hi - obs_lo, abs(obs_hi) * 0.01, 1e-9)
            for pad, share, level, why in (
                    (tol.numeric_margin * span, tol.unseen_category_tolerance, WARNING,
                     f"observed range widened by {tol.numeric_margin:.0%} of its span (validation.numeric_margin)"),
                    (tol.range_fail_factor * span, tol.unseen_category_fail_share, CRITICAL,
                     f"observed range widened by {tol.range_fail_factor:g} spans (validation.range_fail_factor): "
                     "values this far off are a unit or scale bug, not a season")):
                lo, hi = _band(obs_lo, obs_hi, pad, bounds, col.type == "integer")
                specs.append(("ExpectColumnValuesToBeBetween",
                              {"column": name, "min_value": lo, "max_value": hi, "mostly": round(1 - share, 6)},
                              {"why": why}, level))
            specs += _not_constant(name, values)
        elif col.type in ("categorical", "string", "text"):
            text = reference[name].dropna().astype(str)
            if col.type == "categorical":
                domain = sorted(text.unique())
                specs += [("ExpectColumnValuesToBeInSet",
                           {"column": name, "value_set": domain, "mostly": round(1 - share, 6)},
                           {"why": f"categories seen in the reference data; validation.{key}"}, level)
                          for key, share, level in (
                              ("unseen_category_tolerance", tol.unseen_category_tolerance, WARNING),
                              ("unseen_category_fail_share", tol.unseen_category_fail_share, CRITICAL))]
                specs += _not_constant(name, text)
            if not text.empty:
                longest = int(text.str.len().max())
                specs.append(("ExpectColumnValueLengthsToBeBetween",
                              {"column": name, "max_value": int(max(longest, 1) * tol.text_length_factor)},
                              {"why": f"{tol.text_length_factor:g}x the longest value in the reference data "
                                      f"({longest} characters; validation.text_length_factor)"}, CRITICAL))
    return specs


def build_suite(context: FileDataContext, reference: pd.DataFrame, params: Params) -> str:
    """Create (or replace) the batch suite and its validation definition in the file context."""

    return _save_suite(context, params.validation.suite, expectation_specs(reference, params),
                       {"generated_by": "ctloop suite build", "rows": len(reference)})


def _save_suite(context: FileDataContext, name: str, specs: list[Spec], meta: dict[str, Any]) -> str:
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from ctloop.validation.context import ensure_batch_definition

    suite = gx.ExpectationSuite(name=name, meta=meta)
    for cls_name, kwargs, exp_meta, severity in specs:
        suite.add_expectation(getattr(gxe, cls_name)(**kwargs, meta=exp_meta, severity=severity))
    from great_expectations.exceptions import DataContextError

    # a rebuild replaces the suite and its definition; on the first build neither exists yet
    with contextlib.suppress(DataContextError):
        context.validation_definitions.delete(name)
    with contextlib.suppress(DataContextError):
        context.suites.delete(name)
    suite = context.suites.add(suite)
    batch_definition = ensure_batch_definition(context)
    context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch_definition, suite=suite))
    return name


def _target_domain(ds: DatasetSpec) -> Spec:
    """A classifier's labels are ``dataset.classes``; a regression target is a finite number in the contract's
    bounds (a label is never clipped: it is data, not a request)."""
    if ds.is_classifier:
        return ("ExpectColumnValuesToBeInSet", {"column": ds.target, "value_set": list(ds.classes)},
                {"why": "dataset.classes"}, CRITICAL)
    col = ds.columns[ds.target]
    return ("ExpectColumnValuesToBeBetween",
            {"column": ds.target, "min_value": col.min if col.min is not None else -FINITE,
             "max_value": col.max if col.max is not None else FINITE},
            {"why": "regression target: finite, within the contract's bounds"}, CRITICAL)


def training_expectation_specs(params: Params) -> list[Spec]:
    """The training-set suite: enough rows, class balance in bounds, no column outside the contract
    (a leaked outcome column such as ``resolution_code`` would fail it)."""
    ds, tp = params.dataset, params.training
    lo, hi = tp.class_share
    balances: dict[str, Spec] = {
        "binary": ("ExpectColumnMeanToBeBetween", {"column": ds.target, "min_value": lo, "max_value": hi},
                   {"why": "training.class_share: positive-class share within bounds"}, CRITICAL),
        "multiclass": ("ExpectColumnDistinctValuesToContainSet", {"column": ds.target, "value_set": list(ds.classes)},
                       {"why": "every class of dataset.classes is in the training set (the model answers for each)"},
                       CRITICAL),
        "regression": ("ExpectColumnStdevToBeBetween", {"column": ds.target, "min_value": 1e-12, "strict_min": True},
                       {"why": "a regression target that never varies teaches nothing"}, CRITICAL)}
    balance = balances[ds.task]
    return [
        ("ExpectTableRowCountToBeBetween", {"min_value": tp.min_rows}, {"why": "training.min_rows"}, CRITICAL),
        ("ExpectTableColumnsToMatchSet", {"column_set": list(ds.columns), "exact_match": True},
         {"why": "no leakage: nothing but the contract's columns reaches training"}, CRITICAL),
        _target_domain(ds),
        ("ExpectColumnValuesToNotBeNull", {"column": ds.target}, {"why": "every training row is labeled"}, CRITICAL),
        balance,
        ("ExpectColumnValuesToBeUnique", {"column": ds.id}, {"why": "no row twice in the training set"}, CRITICAL),
    ]


def build_training_suite(context: FileDataContext, params: Params) -> str:
    return _save_suite(context, params.training.suite, training_expectation_specs(params),
                       {"generated_by": "ctloop suite build", "from": "params.yaml training.*"})
