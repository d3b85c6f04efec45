"""The ONNX Runtime serving path (``ctloop.estimators.onnx``): forests and boosted trees from
``training.estimator`` are converted, used only after they reproduce ``predict_proba`` on the probe, score any
record the request schema lets through as scikit-learn does, and are refused (served by scikit-learn, with
the reason) when they cannot be converted or reproduced; gradient boosting, which ONNX cannot take, behind
features compiled to NumPy (its own trees, exact)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctloop.core.params import EstimatorSpec, load_params
from ctloop.estimators.compiled import probe_records
from ctloop.estimators.onnx import TOLERANCE, verified_onnx
from ctloop.estimators.pipeline import build_model, build_pipeline, default_pipeline
from ctloop.estimators.scoring import predict_scores, records_frame
from tests.conftest import REPO, SPEC
from tests.serving_helpers import training_frame

PARAMS = load_params(SPEC)


def custom(class_path: str, **params: Any) -> Any:
    p = PARAMS
    spec = p.training.model_copy(update={"estimator": EstimatorSpec.model_validate({"class": class_path,
                                                                                     "params": params})})
    return build_model(p.dataset, spec, "custom")[0]


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    params = PARAMS
    frame = training_frame(params, rows=3000)
    x, y = frame[params.dataset.features], frame[params.dataset.target]
    return {"random_forest": custom("sklearn.ensemble.RandomForestClassifier", n_estimators=60,
                                    min_samples_leaf=3).fit(x, y),
            "gradient_boosting": custom("sklearn.ensemble.GradientBoostingClassifier", n_estimators=40).fit(x, y),
            "hist_gradient_boosting": build_pipeline(params.dataset, "hist_gradient_boosting",
                                                     {"max_iter": 20}).fit(x, y),
            "frame": frame}


@pytest.fixture(scope="module")
def forest_scorer(models):  # type: ignore[no-untyped-def]
    scorer, why = verified_onnx(models["random_forest"], PARAMS.dataset)
    assert scorer is not None, why
    return scorer


@pytest.mark.parametrize("name", ["random_forest", "gradient_boosting"])
def test_tree_ensembles_are_served_through_onnx_after_reproducing_the_probe(models, name: str) -> None:  # type: ignore[no-untyped-def]
    contract = PARAMS.dataset
    scorer, why = verified_onnx(models[name], contract)
    assert scorer is not None, why
    assert why.startswith("ONNX Runtime path (max difference")
    frame = models["frame"].head(500)
    records = [{c: (None if pd.isna(v) else v) for c, v in r.items()} for r in frame[contract.features].to_dict("records")]
    expected = predict_scores(models[name], records_frame(records, contract))
    assert np.max(np.abs(scorer(records) - expected)) <= TOLERANCE


contract = PARAMS.dataset
numbers = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False),  # up to +-1.8e308
                    st.integers(min_value=-10**30, max_value=10**30))
texts = st.one_of(st.none(), st.sampled_from(["chat", "email", "billing", "pro", "en", "ja", ""]),
                  st.text(max_size=40), st.text(alphabet="日本語ελληνικάعربي", min_size=1, max_size=20))
record = st.fixed_dictionaries({**{c: numbers for c in contract.numeric_features},
                                **{c: texts for c in contract.categorical_features}})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(record, min_size=1, max_size=20))
def test_any_record_the_schema_passes_scores_as_scikit_learn_does(models, forest_scorer,  # type: ignore[no-untyped-def]
                                                                   records: list[dict[str, Any]]) -> None:
    """Numbers far beyond the contract (clipped on both paths), missing values, unseen, empty and non-Latin
    categories: the ONNX path and scikit-learn agree within the tolerance on every record."""
    scorer = forest_scorer
    expected = predict_scores(models["random_forest"], records_frame(records, contract))
    assert np.max(np.abs(scorer(records) - expected)) <= TOLERANCE


def test_what_it_cannot_convert_or_reproduce_is_refused_with_the_reason(models) -> None:  # type: ignore[no-untyped-def]
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    # not reproduced within the tolerance asked: refused, the difference named
    scorer, why = verified_onnx(models["random_forest"], contract, tolerance=0.0)
    assert scorer is None and why.startswith("scikit-learn path: ONNX scores differ by")
    # a step the surrogate cannot stand in for: an imputer that adds missing-value indicators
    frame = models["frame"]
    pipeline = default_pipeline(contract, custom("sklearn.tree.DecisionTreeClassifier").steps[-1][1])
    numeric = pipeline.steps[0][1].transformers[0][1]
    numeric.steps[0] = ("impute", SimpleImputer(strategy="median", add_indicator=True))
    assert isinstance(numeric, Pipeline)
    pipeline.fit(frame[contract.features], frame[contract.target])
    scorer, why = verified_onnx(pipeline, contract)
    assert scorer is None and "indicator" in why
    # the converter's own limits: whatever it is, the answer is the scikit-learn path and why
    scorer, why = verified_onnx(models["hist_gradient_boosting"], contract)
    assert (scorer is None and why.startswith("scikit-learn path")) or why.startswith("ONNX Runtime path")
    assert len(probe_records(models["random_forest"], contract)) == 200


# compiled features in front of the estimator's own trees (gradient boosting, which ONNX cannot take) -----

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(record, min_size=1, max_size=20))
def test_gradient_boosting_behind_compiled_features_scores_as_its_pipeline(models,  # type: ignore[no-untyped-def]
                                                                            records: list[dict[str, Any]]) -> None:
    from ctloop.estimators.compiled import TOLERANCE as EXACT
    from ctloop.estimators.compiled import verified_features

    scorer, why = verified_features(models["hist_gradient_boosting"], contract)
    assert scorer is not None and why.startswith("compiled features -> HistGradientBoostingClassifier"), why
    expected = predict_scores(models["hist_gradient_boosting"], records_frame(records, contract))
    assert np.max(np.abs(scorer(records) - expected)) <= EXACT


def test_compiled_features_serve_every_task_and_refuse_what_they_do_not_fold(models) -> None:  # type: ignore[no-untyped-def]
    from sklearn.impute import SimpleImputer

    from ctloop.core.params import load_params
    from ctloop.dev.datasets import flights
    from ctloop.estimators.compiled import verified_features

    for example, name in (("flights_arrival", "hist_gradient_boosting"), ("flights_arrival_class", "logistic_regression")):
        params = load_params(REPO / "examples" / example / "params.yaml")
        task_frame = flights(params.dataset.task).head(4000)
        pipeline = build_model(params.dataset, params.training, name)[0].fit(task_frame[params.dataset.features],
                                                                           task_frame[params.dataset.target])
        scorer, why = verified_features(pipeline, params.dataset)
        assert scorer is not None, (example, why)
    # a step it does not fold (a text vectoriser, an indicator) is the scikit-learn path, with the reason
    frame = models["frame"]
    pipeline = default_pipeline(contract, custom("sklearn.tree.DecisionTreeClassifier").steps[-1][1])
    pipeline.steps[0][1].transformers[0][1].steps[0] = ("impute", SimpleImputer(strategy="median", add_indicator=True))
    pipeline.fit(frame[contract.features], frame[contract.target])
    scorer, why = verified_features(pipeline, contract)
    assert scorer is None and "indicator" in why
