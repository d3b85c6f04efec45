"""Train the challenger: one MLflow run with params, batched metrics, the training data as a dataset
input, the model logged with signature, input example and explicit pip requirements, registered as a new
version with alias ``challenger``, and the reference profile stored with it."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.core.logs import library_output_to_log
from ctloop.core.task import proba_columns
from ctloop.estimators.pipeline import build_model
from ctloop.estimators.scoring import answers, model_output
from ctloop.registry.mlflow_registry import CHALLENGER, TAG, configure_mlflow, ensure_experiment
from ctloop.training.profile import reference_profile

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.core.params import Params
    from ctloop.core.settings import Settings

# explicit requirements: MLflow's inference costs seconds per log_model call
PIP_PACKAGES = ("scikit-learn", "pandas", "numpy", "scipy", "skops")


def pip_requirements() -> list[str]:
    return [f"{name}=={pkg_version(name)}" for name in PIP_PACKAGES]


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    version: str
    model_uri: str
    model: str
    hyperparameters: dict[str, Any]
    seed: int
    log_model_seconds: float
    train_seconds: float
    model_size_bytes: int = 0
    config: dict[str, Any] | None = None  # ctloop.estimators.pipeline.ModelConfig, as the lineage records it

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def trigger_tags(trigger: dict[str, Any]) -> dict[str, str]:
    """MLflow tags for how the run started (schedule / manual with reason / drift with reasons)."""
    tags = {f"{TAG}trigger": str(trigger.get("kind", "cli"))}
    if trigger.get("reason"):
        tags[f"{TAG}trigger_reason"] = str(trigger["reason"])[:5000]
    for key in ("dag_id", "run_id"):
        if trigger.get(key):
            tags[f"{TAG}airflow.{key}"] = str(trigger[key])
    if trigger.get("details"):
        tags[f"{TAG}trigger_details"] = json.dumps(trigger["details"], default=str)[:5000]
    return tags


def train_challenger(train: pd.DataFrame, test: pd.DataFrame, window: dict[str, Any], params: Params,
                     settings: Settings, trigger: dict[str, Any], model: str | None = None,
                     hyperparameters: dict[str, Any] | None = None) -> TrainResult:
    import mlflow
    import skops.io
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.models import infer_signature

    tp = params.training
    contract = params.dataset
    features = contract.features
    # the user's estimator or pipeline is imported and checked before anything is written
    pipeline, config = build_model(contract, tp, model, hyperparameters)
    model_name, hp = config.label, config.hyperparameters
    client = configure_mlflow(settings)
    experiment_id = ensure_experiment(client, tp.experiment, settings)

    # MLflow prints ("Successfully registered ...", "View run ...") are log lines, not the verb's output
    with library_output_to_log("mlflow"), mlflow.start_run(experiment_id=experiment_id,
                                                            run_name=f"train-{model_name}") as run:
        started = time.perf_counter()
        pipeline.fit(train[features], train[contract.target])
        train_seconds = time.perf_counter() - started
        mlflow.set_tags({f"{TAG}stage": "train", f"{TAG}model": model_name,
                         f"{TAG}window": f"[{window['start']}, {window['end']})", **trigger_tags(trigger)})
        if config.estimator:
            mlflow.log_params({"estimator.class": config.estimator["class"],
                               **{f"estimator.{k}": v for k, v in config.estimator["params"].items()}})
        if config.pipeline:
            mlflow.log_param("pipeline", config.pipeline)
        mlflow.log_params({"model": model_name, "seed": tp.seed, "window_start": window["start"],
                           "window_end": window["end"], "train_days": len(window["train_days"]),
                           "test_days": len(window["test_days"]), **{f"hp.{k}": v for k, v in hp.items()}})
        train_scores = answers(model_output(pipeline, train[features], contract.task, contract.classes), contract)[1]
        target_mean = {"binary": "train_positive_share", "multiclass": "train_mean_class",
                       "regression": "train_target_mean"}[contract.task]
        mlflow.log_metrics({"train_rows": float(len(train)), "test_rows": float(len(test)),
                            target_mean: float(train[contract.target].mean()), "train_seconds": train_seconds})
        mlflow.log_input(from_pandas(train, name=f"train{window['start']}_{window['end']}",
                                     targets=contract.target), context="training")
        mlflow.log_input(from_pandas(test, name=f"test{window['start']}_{window['end']}",
                                     targets=contract.target), context="testing")
        # numeric features as doubles: an integer column cannot carry a missing value at serving time
        example = train[features].head(5).astype({c: "float64" for c in contract.numeric_features})
        signature = infer_signature(example, pipeline.predict(example))
        started = time.perf_counter()
        info = mlflow.sklearn.log_model(
            pipeline, name="model", signature=signature, input_example=example,
            pip_requirements=pip_requirements() + config.requirements, registered_model_name=tp.registered_model,
            skops_trusted_types=trusted_types(pipeline), code_paths=config.code_paths or None,
        )
        log_model_seconds = time.perf_counter() - started
        model_size = len(skops.io.dumps(pipeline))  # the serialised pipeline, as the registry stores it
        mlflow.log_metrics({"log_model_seconds": log_model_seconds, "model_size_bytes": float(model_size)})
        profile = reference_profile(train, contract, train_scores)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "profile.json").write_text(json.dumps(profile, indent=1))
            sample = train.sample(min(len(train), 20_000), random_state=tp.seed)
            out = model_output(pipeline, sample[features], contract.task, contract.classes)
            sample = sample.assign(prediction_score=answers(out, contract)[1])
            if contract.task == "multiclass":  # prediction drift is judged per class
                sample = sample.assign(**dict(zip(proba_columns(contract.classes), out.T, strict=True)))
            sample.to_parquet(Path(tmp) / "sample.parquet", index=False)
            (Path(tmp) / "window.json").write_text(json.dumps(window, indent=1, default=str))
            mlflow.log_artifacts(tmp, artifact_path="reference")
        version = str(info.registered_model_version)
        client.set_registered_model_alias(tp.registered_model, CHALLENGER, version)
        for key, value in {"run_id": run.info.run_id, "model": model_name,
                           "reference_profile": f"runs:/{run.info.run_id}/reference/profile.json",
                           "window": f"[{window['start']}, {window['end']})",
                           **{k.removeprefix(TAG): v for k, v in trigger_tags(trigger).items()}}.items():
            client.set_model_version_tag(tp.registered_model, version, f"{TAG}{key}", value)
    return TrainResult(run.info.run_id, version, f"models:/{tp.registered_model}/{version}", model_name,
                       hp, tp.seed, round(log_model_seconds, 3), round(train_seconds, 3), model_size,
                       config.to_dict())


def trusted_types(pipeline: object) -> list[str]:
    """The types skops would refuse on load. We built this pipeline ourselves from the contract, so the
    types it holds are exactly the ones to trust (skops' own ``get_untrusted_types`` lists them)."""
    import skops.io

    return list(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))
