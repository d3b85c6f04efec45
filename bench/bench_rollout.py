"""Staged rollout figures on this machine: a real ``ctloop serve`` under steady traffic (about 50 requests a
second from one client), a real MLflow registry, the rollout flows driven once a second (what the
``<model>__rollout`` DAG's trigger does, without Airflow's own latency):

* a good candidate through 5 -> 25 -> 50 -> 100 %: wall seconds per step and from the gate to champion;
* a candidate that fails on part of the traffic at 5 %: seconds until the server's guard sets its weight to
  0 and until the rollout ends Failed;
* a rollback right after the promotion: seconds from the alias move until the server answers from the warm
  ``@previous`` (no load).

Prints figures; asserts nothing about them."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO)]
os.environ.setdefault("DO_NOT_TRACK", "true")

from tests.conftest import gate_version, write_params  # noqa: E402
from tests.serving_helpers import Server, failing_on_unseen, register, training_frame  # noqa: E402

MIN_REQUESTS = 100
STEPS = [{"weight": w, "min_requests": MIN_REQUESTS, "min_seconds": 0, "timeout_seconds": 600}
         for w in (0.05, 0.25, 0.5, 1.0)]
POLICY = {"steps": STEPS, "interval_seconds": 1,
          "analysis": {"error_rate_increase": {"success": 0.005, "failure": 0.02},
                       "p99_ratio": {"success": 3.0, "failure": 10.0},
                       "score_distance": {"success": 0.25, "failure": 0.5}}}
SERVING = {"poll_seconds": 0.5, "guard": {"window": 200, "min_requests": 20, "max_error_rate_increase": 0.02},
           "log": {"flush_seconds": 0.5, "flush_rows": 5000, "max_queue_rows": 200000}}


def traffic(server: Server, rows: list[dict], features: list[str], stop: threading.Event, out: Counter) -> None:
    with server.client() as c:
        i = 0
        while not stop.is_set():
            rec = {k: rows[i % len(rows)][k] for k in features} | {"request_id": f"b-{i}", "key": f"k-{i}"}
            out[c.post("/predict", json=rec).status_code] += 1
            i += 1
            time.sleep(0.02)


def drive(params, settings, until: set[str]) -> tuple[float, list[dict]]:  # type: ignore[no-untyped-def]
    from ctloop.flows.rollout import advance_rollout

    started = time.monotonic()
    while True:
        done = advance_rollout(params, settings, actor="bench")
        assert done.state is not None
        if done.state.status in until:
            return time.monotonic() - started, list(done.state.steps)
        time.sleep(1)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="ctloop-bench-rollout-"))
    home = root / "home"
    params_path = write_params(root / "params.yaml", serving=SERVING, promotion={"mode": "rollout", "rollout": POLICY})
    os.environ.update(CTLOOP_HOME=str(home), CTLOOP_PARAMS=str(params_path))
    from ctloop.core.params import load_params
    from ctloop.core.settings import get_settings
    from ctloop.estimators.pipeline import build_pipeline
    from ctloop.flows.promotion import rollback_version
    from ctloop.flows.rollout import start_rollout
    from ctloop.registry.mlflow_registry import alias_version, configure_mlflow

    settings, params = get_settings(), load_params(params_path)
    client, name = configure_mlflow(settings), params.training.registered_model
    frame = training_frame(params)
    lr = {"max_iter": 1000}
    v1 = register(settings, params, build_pipeline(params.dataset, "logistic_regression", lr), frame, ("champion",))
    good = register(settings, params, build_pipeline(params.dataset, "logistic_regression", lr | {"C": 0.8}), frame)
    bad = register(settings, params, failing_on_unseen(params), frame[frame["language"] != "ja"])
    server = Server(home, params_path)
    stop, answers = threading.Event(), Counter[int]()
    try:
        server.wait_ready()
        feeder = threading.Thread(target=traffic, args=(server, frame.to_dict("records"), params.dataset.features,
                                                        stop, answers), daemon=True)
        feeder.start()
        time.sleep(3)
        gate_version(client, name, good, True, v1, ["bench"])
        start_rollout(params, settings, good, "bench: good candidate", actor="bench")
        total, steps = drive(params, settings, {"promoted", "aborted", "paused"})
        print(f"good candidate: gate -> 100 % and champion in {total:.1f} s wall "
              f"({MIN_REQUESTS} candidate requests per step, ~50 requests/s)")
        for s in steps:
            print(f"  step {s['step'] + 1} at {s['weight']:.0%}: {s['outcome']} after {s['wall_seconds']:.1f} s")
        with server.client() as c:
            moved = time.monotonic()
            rollback_version(params, settings, v1, "bench: switch back", actor="bench")
            after_move = time.monotonic()
            while c.get("/model").json()["champion"]["version"] != v1:
                time.sleep(0.01)
            print(f"rollback: registry move {after_move - moved:.2f} s, then served from the warm @previous "
                  f"{time.monotonic() - after_move:.2f} s later (serving.poll_seconds {SERVING['poll_seconds']})")
        gate_version(client, name, bad, True, alias_version(client, name, "champion"), ["bench"])
        started = time.monotonic()
        start_rollout(params, settings, bad, "bench: failing candidate", actor="bench")
        from ctloop.data.routes import read_routes

        while not read_routes(settings.state_dir, params.serving).stopped:
            time.sleep(0.05)
        guard = time.monotonic() - started
        ended, steps = drive(params, settings, {"aborted", "promoted", "paused"})
        print(f"failing candidate at 5 %: guard set its weight to 0 after {guard:.1f} s; rollout "
              f"{steps[-1]['outcome'] if steps else '?'} {guard + ended:.1f} s after the gate")
        print(f"requests answered: {dict(answers)}")
    finally:
        stop.set()
        server.stop()


if __name__ == "__main__":
    main()
