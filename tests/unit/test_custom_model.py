"""A team's own estimator and pipeline (``training.estimator`` / ``training.pipeline``): built, checked and
recorded without editing ctloop; every bad path or unusable class is one ConfigError naming the key."""

from __future__ import annotations

import hashlib
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctloop.core.errors import ConfigError
from ctloop.core.params import TrainingSpec, load_params
from ctloop.data.simulator import SimulationSpec, simulate_day
from ctloop.estimators.pipeline import build_model
from tests.conftest import SPEC, write_params

PARAMS = load_params(SPEC)
CONTRACT = PARAMS.dataset


def spec(**training: object) -> TrainingSpec:
    return TrainingSpec.model_validate({"registered_model": "m", **training})


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    from datetime import date

    return simulate_day(date(2026, 1, 5), SimulationSpec(rows=400))


def fit_scores(pipeline, frame: pd.DataFrame) -> np.ndarray:  # type: ignore[no-untyped-def]
    pipeline.fit(frame[CONTRACT.features], frame[CONTRACT.target])
    return pipeline.predict_proba(frame[CONTRACT.features])[:, 1]


def test_an_estimator_class_replaces_the_model_step(frame: pd.DataFrame) -> None:
    pipeline, config = build_model(CONTRACT, spec(estimator={
        "class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 7, "max_depth": 3}}))
    model = pipeline.steps[-1][1]
    assert type(model).__name__ == "RandomForestClassifier"
    assert (model.n_estimators, model.max_depth, model.random_state) == (7, 3, 42)  # the run's seed
    assert config.model == "custom" and config.label == "RandomForestClassifier"
    assert config.code[0].module.startswith("sklearn.ensemble") and config.code[0].distribution == "scikit-learn"
    assert config.requirements == [f"scikit-learn=={config.code[0].version}"]
    scores = fit_scores(pipeline, frame)
    assert scores.shape == (len(frame),) and ((scores >= 0) & (scores <= 1)).all()


def test_overrides_use_scikit_learn_names(frame: pd.DataFrame) -> None:
    pipeline, config = build_model(CONTRACT, spec(estimator={"class": "sklearn.ensemble.RandomForestClassifier"}),
                                   hyperparameters={"n_estimators": 3,
                                                    "features__numeric__impute__strategy": "mean"})
    assert pipeline.steps[-1][1].n_estimators == 3
    assert pipeline.get_params()["features__numeric__impute__strategy"] == "mean"
    assert config.hyperparameters == {"n_estimators": 3, "features__numeric__impute__strategy": "mean"}
    with pytest.raises(ConfigError, match=r"^hyperparameters: .*n_trees"):
        build_model(CONTRACT, spec(estimator={"class": "sklearn.ensemble.RandomForestClassifier"}),
                    hyperparameters={"n_trees": 3})


def test_builtin_models_keep_their_names_and_params() -> None:
    pipeline, config = build_model(CONTRACT, PARAMS.training, "logistic_regression", {"C": 0.5})
    assert config.model == config.label == "logistic_regression"
    assert config.hyperparameters == {**PARAMS.training.models["logistic_regression"], "C": 0.5}
    assert config.code == [] and pipeline.steps[-1][1].C == 0.5
    with pytest.raises(ConfigError, match=r"^training\.model: .custom. needs"):
        build_model(CONTRACT, PARAMS.training, "custom")


@pytest.mark.parametrize(("estimator", "message"), [
    ({"class": "no_such_team_pkg.Model"}, r"^training\.estimator\.class: cannot import module 'no_such_team_pkg'"),
    ({"class": "sklearn.ensemble.NoSuchForest"}, r"^training\.estimator\.class: module 'sklearn.ensemble' has no "
                                                 r"'NoSuchForest'"),
    ({"class": "sklearn.svm.LinearSVC"}, r"^training\.estimator\.class: sklearn.svm.LinearSVC has no predict_proba"),
    ({"class": "sklearn.preprocessing.StandardScaler"}, r"^training\.estimator\.class: .* has no predict\(\)"),
    ({"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_trees": 3}},
     r"^training\.estimator\.params: sklearn.ensemble.RandomForestClassifier: .*n_trees"),
    ({"class": "sklearn.metrics.roc_auc_score"}, r"^training\.estimator\.class: .* is not a class"),
])
def test_unusable_estimators_are_one_line_errors_naming_the_key(estimator: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        build_model(CONTRACT, spec(estimator=estimator))
    assert "\n" not in str(err.value)


def write_module(root: Path, name: str, body: str, package_name: str = "team_code") -> Path:
    package = root / package_name
    package.mkdir(exist_ok=True)
    (package / "__init__.py").touch()
    path = package / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_a_pipeline_function_from_the_team_s_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  frame: pd.DataFrame) -> None:
    source = write_module(tmp_path, "features_ok", """
        from sklearn.compose import make_column_transformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder

        def build(contract):
            features = make_column_transformer(
                (SimpleImputer(strategy="median"), contract.numeric_features),
                (make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
                 contract.categorical_features))
            return make_pipeline(features, LogisticRegression(max_iter=500))
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    pipeline, config = build_model(CONTRACT, spec(pipeline="team_code.features_ok:build"), hyperparameters={"C": 0.2})
    assert pipeline.steps[-1][1].C == 0.2  # a plain name is the last step's
    [record] = config.code
    assert record.module == "team_code.features_ok" and record.distribution is None
    assert record.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert config.code_paths == [str(tmp_path / "team_code")]  # shipped with the model (MLflow code_paths)
    assert fit_scores(pipeline, frame).shape == (len(frame),)

    # with training.estimator too, the estimator takes the pipeline's last step
    pipeline, config = build_model(CONTRACT, spec(pipeline="team_code.features_ok:build",
                                                  estimator={"class": "sklearn.tree.DecisionTreeClassifier",
                                                             "params": {"max_depth": 2}}))
    assert type(pipeline.steps[-1][1]).__name__ == "DecisionTreeClassifier" and len(config.code) == 2
    assert fit_scores(pipeline, frame).shape == (len(frame),)


@pytest.mark.parametrize(("body", "path", "message"), [
    ("def build(contract):\n    return 42\n", "team_code.bad_a:build", r"returned a int, not an unfitted"),
    ("def build(contract):\n    raise KeyError('body')\n", "team_code.bad_b:build", r"raised KeyError: 'body'"),
    ("raise RuntimeError('broken at import')\n", "team_code.bad_c:build", r"importing 'team_code.bad_c' raised "
                                                                          r"RuntimeError"),
    ("BUILD = 3\n", "team_code.bad_d:BUILD", r"is not a function"),
    ("def other(contract):\n    pass\n", "team_code.bad_e:build", r"has no 'build'"),
    ("from sklearn.svm import LinearSVC\ndef build(contract):\n    return LinearSVC()\n", "team_code.bad_f:build",
     r"has no predict_proba"),
])
def test_bad_pipelines_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, path: str,
                                           message: str) -> None:
    package = f"team_{uuid.uuid4().hex[:8]}"  # a fresh package: an imported one is cached in sys.modules
    path = path.replace("team_code", package)
    write_module(tmp_path, path.split(":")[0].rsplit(".", 1)[1], body, package)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"^training\.pipeline: .*" + message.replace("team_code", package)) as err:
        build_model(CONTRACT, spec(pipeline=path))
    assert "\n" not in str(err.value)


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attr=st.one_of(names, st.sampled_from(["RandomForestClassifier", "IsolationForest", "VotingClassifier",
                                              "BaseEnsemble", "HistGradientBoostingRegressor"])),
       package=st.sampled_from(["sklearn.ensemble", "sklearn.linear_model", "sklearn.no_such_module"]))
def test_any_class_path_builds_or_fails_with_a_config_error(attr: str, package: str) -> None:
    """Whatever the class path names (absent, abstract, needing arguments, a regressor), the answer is a usable
    pipeline or one ConfigError on the estimator's keys, never another exception."""
    try:
        pipeline, _ = build_model(CONTRACT, spec(estimator={"class": f"{package}.{attr}"}))
    except ConfigError as e:
        assert str(e).startswith(("training.estimator.class: ", "training.estimator.params: "))
        assert "\n" not in str(e)
    else:
        assert hasattr(pipeline, "predict_proba") and hasattr(pipeline, "fit")


def test_params_name_the_file_and_key_for_malformed_paths(tmp_path: Path) -> None:
    for training, key in [({"pipeline": "team_code.features"}, "training.pipeline"),
                          ({"estimator": {"class": "RandomForest"}}, "training.estimator.class"),
                          ({"estimator": {"class": "a.B", "n_estimators": 3}}, "training.estimator.n_estimators"),
                          ({"model": "custom"}, "training")]:
        path = write_params(tmp_path / "params.yaml", training=training)
        with pytest.raises(ConfigError, match=rf"^{path}: {key}: ") as err:
            load_params(path)
        assert "\n" not in str(err.value)
    path = write_params(tmp_path / "params.yaml", training={"pipeline": "team_code.features:build"})
    assert load_params(path).training.model == "logistic_regression"  # named explicitly: it stays
    raw = yaml.safe_load(path.read_text())
    del raw["training"]["model"]
    path.write_text(yaml.safe_dump(raw))
    assert load_params(path).training.model == "custom"  # unnamed: the configured code is the default model
