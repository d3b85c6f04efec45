"""Bootstrap the batch expectation suite from reference data and the dataset contract.

The suite is generated once by ``ctloop suite build``, reviewed and committed; it is never regenerated
at run time. Tolerances come from ``params.yaml`` (``validation.*``).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from ctloop.core.params import NUMERIC_TYPES

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.data_context import FileDataContext

    from ctloop.core.params import Params

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
    "boolean": ["bool", "boolean"],
    # validated as naive UTC (see ctloop.validation.run.validation_view): GX cannot match tz-aware dtypes
    "timestamp": ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"],
}


def expectation_specs(reference: pd.DataFrame, params: Params) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(expectation class name, kwargs, meta) for the batch suite; pure, so it is unit-testable."""
    ds, tol = params.dataset, params.validation
    specs: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("ExpectTableColumnsToMatchSet", {"column_set": list(ds.columns), "exact_match": True},
         {"why": "the contract's columns, no more, no fewer (catches renamed, missing and extra columns)"}),
        ("ExpectTableRowCountToBeBetween", {"min_value": tol.min_rows, "max_value": tol.max_rows},
         {"why": "validation.min_rows/max_rows"}),
        ("ExpectColumnValuesToBeUnique", {"column": ds.id}, {"why": "ids identify a row"}),
        ("ExpectColumnValuesToBeBetween",
         {"column": ds.timestamp, "min_value": {"$PARAMETER": INTERVAL_START},
          "max_value": {"$PARAMETER": INTERVAL_END}, "strict_max": True},
         {"why": "every row belongs to the run's data interval"}),
        ("ExpectColumnValuesToBeInSet", {"column": ds.target, "value_set": list(ds.classes)},
         {"why": "dataset.classes"}),
    ]
    for name, col in ds.columns.items():
        specs.append(("ExpectColumnValuesToBeInTypeList", {"column": name, "type_list": TYPE_LISTS[col.type]},
                      {"why": f"contract type {col.type}"}))
        mostly = 1.0 if not col.nullable else round(1 - tol.null_tolerance, 6)
        specs.append(("ExpectColumnValuesToNotBeNull", {"column": name, "mostly": mostly},
                      {"why": "not nullable" if not col.nullable else "validation.null_tolerance"}))
        if name in (ds.target,):
            continue
        if col.type in NUMERIC_TYPES and name in reference.columns:
            lo = col.min if col.min is not None else -FINITE
            hi = col.max if col.max is not None else FINITE
            specs.append(("ExpectColumnValuesToBeBetween", {"column": name, "min_value": lo, "max_value": hi},
                          {"why": "contract bounds from params.yaml; also rejects ±inf"}))
            values = reference[name].astype("float64")
            obs_lo, obs_hi = float(values.min()), float(values.max())
            pad = tol.numeric_margin * max(obs_hi - obs_lo, abs(obs_hi) * 0.01, 1e-9)
            soft_lo = max(obs_lo - pad, lo)
            soft_hi = min(obs_hi + pad, hi)
            if col.type == "integer":
                soft_lo, soft_hi = float(int(soft_lo // 1)), float(-(-soft_hi // 1))
            specs.append(("ExpectColumnValuesToBeBetween",
                          {"column": name, "min_value": round(soft_lo, 6), "max_value": round(soft_hi, 6),
                           "mostly": round(1 - tol.unseen_category_tolerance, 6)},
                          {"why": f"observed range of the reference data widened by {tol.numeric_margin:.0%}"}))
        elif col.type == "categorical" and name in reference.columns:
            domain = sorted(str(v) for v in reference[name].dropna().unique())
            specs.append(("ExpectColumnValuesToBeInSet",
                          {"column": name, "value_set": domain,
                           "mostly": round(1 - tol.unseen_category_tolerance, 6)},
                          {"why": "domain seen in the reference data; validation.unseen_category_tolerance"}))
    return specs


def build_suite(context: FileDataContext, reference: pd.DataFrame, params: Params) -> str:
    """Create (or replace) the batch suite and its validation definition in the file context."""

    return _save_suite(context, params.validation.suite, expectation_specs(reference, params),
                       {"generated_by": "ctloop suite build", "rows": len(reference)})


def _save_suite(context: FileDataContext, name: str, specs: list[tuple[str, dict[str, Any], dict[str, Any]]],
                meta: dict[str, Any]) -> str:
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from ctloop.validation.context import ensure_batch_definition

    suite = gx.ExpectationSuite(name=name, meta=meta)
    for cls_name, kwargs, exp_meta in specs:
        suite.add_expectation(getattr(gxe, cls_name)(**kwargs, meta=exp_meta))
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


def training_expectation_specs(params: Params) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The training-set suite: enough rows, class balance in bounds, no column outside the contract
    (a leaked outcome column such as ``resolution_code`` would fail it)."""
    ds, tp = params.dataset, params.training
    lo, hi = tp.class_share
    return [
        ("ExpectTableRowCountToBeBetween", {"min_value": tp.min_rows}, {"why": "training.min_rows"}),
        ("ExpectTableColumnsToMatchSet", {"column_set": list(ds.columns), "exact_match": True},
         {"why": "no leakage: nothing but the contract's columns reaches training"}),
        ("ExpectColumnValuesToBeInSet", {"column": ds.target, "value_set": list(ds.classes)}, {"why": "dataset.classes"}),
        ("ExpectColumnValuesToNotBeNull", {"column": ds.target}, {"why": "every training row is labeled"}),
        ("ExpectColumnMeanToBeBetween", {"column": ds.target, "min_value": lo, "max_value": hi},
         {"why": "training.class_share: positive-class share within bounds"}),
        ("ExpectColumnValuesToBeUnique", {"column": ds.id}, {"why": "no row twice in the training set"}),
    ]


def build_training_suite(context: FileDataContext, params: Params) -> str:
    return _save_suite(context, params.training.suite, training_expectation_specs(params),
                       {"generated_by": "ctloop suite build", "from": "params.yaml training.*"})
