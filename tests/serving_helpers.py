"""Real models in a real MLflow registry and a real ``ctloop serve`` process, for the serving tests and
``bench/bench_serving.py``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from ctloop.dev.local_airflow import free_port

TRAIN_DAY = date(2026, 3, 2)


def training_frame(params: Any, rows: int = 3000, day: date = TRAIN_DAY) -> Any:
    from ctloop.data.simulator import SimulationSpec, simulate_day

    return simulate_day(day, SimulationSpec(rows=rows, seed=params.source.seed))


def register(settings: Any, params: Any, pipeline: Any, frame: Any, aliases: tuple[str, ...] = ()) -> str:
    """Fit ``pipeline`` on ``frame`` and register it as a new version of the params' model (signature and
    input example as ``ctloop train`` logs them); returns the version."""
    import mlflow
    from mlflow.models import infer_signature

    from ctloop.registry.mlflow_registry import configure_mlflow, ensure_experiment
    from ctloop.training.train import pip_requirements, trusted_types

    client = configure_mlflow(settings)
    contract = params.dataset
    X, y = frame[contract.features], frame[contract.target]
    pipeline.fit(X, y)
    name = params.training.registered_model
    experiment = ensure_experiment(client, "serving-tests", settings)  # artifacts under the settings' root
    with mlflow.start_run(experiment_id=experiment):
        example = X.head(5).astype({c: "float64" for c in contract.numeric_features})
        info = mlflow.sklearn.log_model(pipeline, name="model", signature=infer_signature(example, pipeline.predict(example)),
                                        input_example=example, registered_model_name=name,
                                        pip_requirements=pip_requirements(), skops_trusted_types=trusted_types(pipeline))
    version = str(info.registered_model_version)
    for alias in aliases:
        client.set_registered_model_alias(name, alias, version)
    return version


def failing_on_unseen(params: Any) -> Any:
    """The production pipeline, except that an unseen category makes it raise (a bad release: it loads and
    answers its warm-up call, then fails on part of the traffic)."""
    from sklearn.preprocessing import OneHotEncoder

    from ctloop.estimators.pipeline import build_pipeline

    pipeline = build_pipeline(params.dataset, "logistic_regression", {"max_iter": 1000})
    categorical = pipeline.named_steps["features"].transformers[1][1]
    categorical.steps[1] = ("onehot", OneHotEncoder(handle_unknown="error", sparse_output=False))
    return pipeline


class Server:
    """``ctloop serve`` as a subprocess on a free loopback port."""

    def __init__(self, home: Path, params_path: Path | None, token: str | None = None, port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        """``params_path`` None: the deployment's models folder (``CTLOOP_MODELS_DIR`` in ``env``)."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.log = home / f"serve-{self.port}.log"
        env = {**os.environ, "CTLOOP_HOME": str(home), **(env or {})}
        env.pop("CTLOOP_PARAMS", None)
        if params_path is not None:
            env["CTLOOP_PARAMS"] = str(params_path)
        env.pop("CTLOOP_SERVING_TOKEN", None)
        if token:
            env["CTLOOP_SERVING_TOKEN"] = token
        home.mkdir(parents=True, exist_ok=True)
        self._out = self.log.open("w")
        self.proc = subprocess.Popen([str(Path(sys.executable).with_name("ctloop")), "serve", "--port", str(self.port)],
                                     env=env, stdout=self._out, stderr=subprocess.STDOUT)

    def client(self, token: str | None = "default", timeout: float = 30.0) -> httpx.Client:
        token = self.token if token == "default" else token
        return httpx.Client(base_url=self.url, timeout=timeout,
                            headers={"Authorization": f"Bearer {token}"} if token else {})

    def wait_ready(self, timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.client() as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"ctloop serve exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
                try:
                    r = c.get("/ready")
                    if r.status_code == 200:
                        return dict(r.json())
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        raise TimeoutError(f"ctloop serve not ready after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._out.close()
        return code


def logged(lake_root: Path, columns: tuple[str, ...] = ("request_id", "route", "model_version", "score")) -> Any:
    """Every row of the prediction log."""
    import pandas as pd

    files = sorted((lake_root / "predictions").glob("dt=*/hour=*/*.parquet"))
    if not files:
        return pd.DataFrame(columns=list(columns))
    return pd.concat([pd.read_parquet(f, columns=list(columns)) for f in files], ignore_index=True)


class Traffic:
    """Requests through ``served["server"]`` (one new key each, from ``served["frame"]``'s rows, checked
    against ``served["params"]``), from a thread until the ``with`` block ends; every answer's (status,
    route). An error in the thread fails the test at the block's end."""

    def __init__(self, served: dict[str, Any], prefix: str, pause: float = 0.0) -> None:
        import threading
        from collections import Counter

        self.served, self.prefix, self.pause, self.answers = served, prefix, pause, Counter[Any]()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self._send()
        except BaseException as e:  # the test fails on it, not silently
            self.error = e

    def _send(self) -> None:
        features = self.served["params"].dataset.features
        rows = self.served["frame"].to_dict("records")
        with self.served["server"].client() as c:
            i = 0
            while not self._stop.is_set():
                rec = {k: rows[i % len(rows)][k] for k in features} | {"request_id": f"{self.prefix}-{i}",
                                                                       "key": f"{self.prefix}-k{i}"}
                r = c.post("/predict", json=rec)
                self.answers[(r.status_code, r.json().get("route") if r.status_code == 200 else None)] += 1
                i += 1
                time.sleep(self.pause)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert self.error is None, repr(self.error)
