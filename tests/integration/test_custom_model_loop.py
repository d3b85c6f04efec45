"""A team's own pipeline (a custom transformer in its own package) and estimator through the real loop:
GX-validated ingest, DVC training set, MLflow run and registry, the evaluation suites and the gate, the
model loaded back where the team's package is not importable (MLflow ``code_paths``), lineage naming the
code's SHA-256, ``reproduce`` rebuilding it, LightGBM as an optional extra, and the CLI's one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli, write_params

pytestmark = pytest.mark.integration

DAYS = [date(2026, 1, 1) + timedelta(days=i) for i in range(8)]

TEAM_CODE = '''
"""The team's feature engineering: a transformer ctloop has never seen, then a random forest."""
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OrdinalEncoder


class Log1p(BaseEstimator, TransformerMixin):
    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]  # fitted: scikit-learn checks for a trailing-underscore attribute
        return self

    def transform(self, X):
        return np.log1p(np.clip(np.asarray(X, dtype=float), 0, None))


def build(contract):
    features = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), Log1p()), contract.numeric_features),
        ("categorical", make_pipeline(SimpleImputer(strategy="constant", fill_value="__missing__"),
                                      OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)),
         contract.categorical_features),
    ])
    return Pipeline([("features", features),
                     ("model", RandomForestClassifier(n_estimators=40, max_depth=8, random_state=3))])
'''


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:  # type: ignore[type-arg]
    from ctloop.core.params import load_params
    from ctloop.core.settings import get_settings
    from ctloop.data.store import Lake
    from ctloop.flows.ingest import ingest_day
    from ctloop.flows.retrain import describe_trigger, prepare, training_set_dir, validate_training_set
    from ctloop.validation.context import open_context

    root = tmp_path_factory.mktemp("custom")
    code = root / "teamcode" / "acme_features"
    code.mkdir(parents=True)
    (code / "__init__.py").touch()
    (code / "pipelines.py").write_text(TEAM_CODE)
    params_file = write_params(root / "params.yaml", source={"rows_per_day": 600},
                               training={"min_rows": 1000, "window_days": 8, "test_days": 2, "model": "custom",
                                         "pipeline": "acme_features.pipelines:build"})
    env = {"CTLOOP_HOME": str(root / "home"), "CTLOOP_PARAMS": str(params_file),
           "PYTHONPATH": os.pathsep.join([str(root / "teamcode"), os.environ.get("PYTHONPATH", "")])}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.syspath_prepend(str(root / "teamcode"))
        get_settings.cache_clear()
        settings, params = get_settings(), load_params(params_file)
        lake, context = Lake(settings.lake_root), open_context(settings)
        for day in DAYS:
            assert ingest_day(day, params, lake, context).status == "curated"
        data = training_set_dir(lake, "custom")
        prepare(params, lake, DAYS[-1] + timedelta(days=1), 8, data,
                describe_trigger("manual", "custom model test", None, "support_escalation__retrain", "manual__x"))
        validate_training_set(params, settings, data)
        yield {"settings": settings, "params": params, "lake": lake, "data": data, "env": env, "root": root,
               "params_file": params_file, "code_file": code / "pipelines.py"}
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def trained(world):  # type: ignore[no-untyped-def]
    from ctloop.flows.retrain import train

    return train(world["params"], world["settings"], world["data"], hyperparameters={"n_estimators": 30})


def test_the_team_pipeline_is_trained_logged_and_traced_to_its_code(world, trained) -> None:  # type: ignore[no-untyped-def]
    from ctloop.registry.mlflow_registry import configure_mlflow

    client = configure_mlflow(world["settings"])
    run = client.get_run(trained.run_id)
    assert run.data.params["pipeline"] == "acme_features.pipelines:build"
    assert run.data.params["hp.n_estimators"] == "30" and trained.model == "acme_features.pipelines:build"
    digest = hashlib.sha256(world["code_file"].read_bytes()).hexdigest()
    mv = client.get_model_version(world["params"].training.registered_model, trained.version)
    assert mv.tags["ctloop.lineage.code.acme_features.pipelines.sha256"] == digest
    assert run.data.tags["ctloop.lineage.code.acme_features.pipelines.sha256"] == digest
    config = json.loads(Path(client.download_artifacts(trained.run_id, "lineage/train_config.json",
                                                       str(world["root"]))).read_text())
    assert config["model"] == "custom" and config["code"][0]["sha256"] == digest


def test_the_model_loads_where_the_team_package_is_not_installed(world, trained) -> None:  # type: ignore[no-untyped-def]
    """MLflow ships the package with the model (``code_paths``): a fresh interpreter without it on its path
    loads the model and scores the same as the training process."""
    import mlflow
    import pandas as pd

    contract = world["params"].dataset
    test = pd.read_parquet(world["data"] / "test.parquet").head(50)
    here = mlflow.sklearn.load_model(trained.model_uri).predict_proba(test[contract.features])[:, 1]
    probe = textwrap.dedent(f"""
        import json, sys, mlflow, pandas as pd
        assert not any("teamcode" in p for p in sys.path)
        mlflow.set_tracking_uri({world["settings"].tracking_uri!r})
        model = mlflow.sklearn.load_model({trained.model_uri!r})
        frame = pd.read_parquet({str(world["data"] / "test.parquet")!r}).head(50)
        print(json.dumps(model.predict_proba(frame[{contract.features!r}])[:, 1].tolist()))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=world["root"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == pytest.approx(here.tolist(), abs=1e-12)


def test_the_evaluation_suites_and_the_gate_judge_it_like_a_built_in(world, trained) -> None:  # type: ignore[no-untyped-def]
    from ctloop.flows.retrain import evaluate, gate

    evaluated = evaluate(world["params"], world["settings"], world["data"], trained.version, trained.run_id)
    assert set(evaluated.suites) >= {"golden", "behavioural", "adversarial", "budgets"}
    assert evaluated.metrics["roc_auc"] > 0.6  # the forest learned something real from the simulator
    decision = gate(world["params"], world["settings"], world["data"] / "evaluation.json")
    assert decision.challenger == trained.version


def test_reproduce_rebuilds_the_team_pipeline_from_its_recorded_config(world, trained) -> None:  # type: ignore[no-untyped-def]
    from ctloop.flows.lineage import reproduce

    result = reproduce(world["settings"], world["params"], world["lake"], trained.version)
    assert result.identical and result.max_score_difference == 0


def test_lightgbm_as_an_optional_extra(world) -> None:  # type: ignore[no-untyped-def]
    """``pip install ctloop[lightgbm]``; the version's requirements name it, so the model is servable elsewhere."""
    pytest.importorskip("lightgbm")
    from importlib.metadata import version

    import mlflow
    import pandas as pd

    from ctloop.core.params import load_params
    from ctloop.flows.retrain import train

    path = write_params(world["root"] / "lgbm.yaml", source={"rows_per_day": 600}, training={
        "min_rows": 1000, "window_days": 8, "test_days": 2, "model": "custom",
        "estimator": {"class": "lightgbm.LGBMClassifier",
                      "params": {"n_estimators": 30, "num_leaves": 15, "verbose": -1, "deterministic": True,
                                 "force_row_wise": True, "n_jobs": 1}}})
    result = train(load_params(path), world["settings"], world["data"])
    assert result.model == "LGBMClassifier" and result.config and result.config["estimator"]["params"]["n_jobs"] == 1
    local = mlflow.artifacts.download_artifacts(f"runs:/{result.run_id}/model/requirements.txt")
    assert f"lightgbm=={version('lightgbm')}" in Path(local).read_text().split()
    test = pd.read_parquet(world["data"] / "test.parquet")
    scores = mlflow.sklearn.load_model(result.model_uri).predict_proba(test[world["params"].dataset.features])[:, 1]
    assert ((scores > 0) & (scores < 1)).all()


@pytest.mark.parametrize(("training", "message"), [
    ({"pipeline": "acme_features.missing:build"}, "training.pipeline: cannot import module 'acme_features.missing'"),
    ({"estimator": {"class": "sklearn.svm.LinearSVC"}}, "training.estimator.class: sklearn.svm.LinearSVC has no "
                                                        "predict_proba()"),
])
def test_the_cli_names_the_key_and_exits_2(world, training: dict, message: str) -> None:  # type: ignore[no-untyped-def]
    path = world["root"] / "bad.yaml"
    raw = yaml.safe_load(world["params_file"].read_text())
    raw["training"].pop("pipeline")
    raw["training"].update(training)
    path.write_text(yaml.safe_dump(raw))
    done = run_cli("train", "--data-dir", str(world["data"]), env={**world["env"], "CTLOOP_PARAMS": str(path)})
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr
