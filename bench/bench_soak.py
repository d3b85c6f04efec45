"""Soak: ``ctloop serve`` at a steady request rate for ``BENCH_SOAK_MINUTES`` (10 by default) while the
champion is hot-swapped and the canary fraction changed every 30 s. Goals: 0 failed requests, every
answered request in the prediction log (rows logged = requests answered; nothing dropped or
dead-lettered), and memory flat: the slope of the server's RSS over the run (a least-squares line through
samples taken every 5 s after the first minute) is printed in MB per minute.

Load: ``BENCH_SOAK_RATE`` requests/s (100 by default) of 10-record batches from 4 client threads, each
request paced; the server, the load and the registry moves all run on this 2-core machine.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "models" / "support_escalation.yaml"  # the demo model's spec (over models/_defaults.yaml)
sys.path[:0] = [str(REPO / "include"), str(REPO)]
from ctloop.core.params import read_spec  # noqa: E402

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
MINUTES = float(os.environ.get("BENCH_SOAK_MINUTES", "10"))
RATE = float(os.environ.get("BENCH_SOAK_RATE", "100"))
BATCH = 10


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    n = len(samples)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in samples) / n
    my = sum(v for _, v in samples) / n
    var = sum((t - mx) ** 2 for t, _ in samples)
    return 60 * sum((t - mx) * (v - my) for t, v in samples) / var if var else 0.0


def main() -> None:
    import httpx
    import yaml

    from ctloop.core.params import load_params
    from ctloop.core.settings import Settings
    from ctloop.estimators.pipeline import build_pipeline
    from ctloop.registry.mlflow_registry import configure_mlflow
    from tests.serving_helpers import Server, logged, register, training_frame

    tmp = Path(tempfile.mkdtemp(prefix="ctloop-bench-soak-"))
    home = tmp / "home"
    raw = read_spec(SPEC)
    raw["serving"] |= {"poll_seconds": 1.0, "log": {"flush_seconds": 1.0, "flush_rows": 20000,
                                                     "max_queue_rows": 200000}}
    params_path = tmp / "params.yaml"
    params_path.write_text(yaml.safe_dump(raw))
    params = load_params(params_path)
    settings = Settings(home=home, params=params_path)
    frame = training_frame(params, rows=5000)
    contract = params.dataset
    v1 = register(settings, params, build_pipeline(contract, "logistic_regression", {"max_iter": 1000}), frame,
                  ("champion",))
    v2 = register(settings, params, build_pipeline(contract, "logistic_regression", {"C": 0.1, "max_iter": 1000}),
                  frame, ("challenger",))
    client = configure_mlflow(settings)
    name = params.training.registered_model
    records = [{c: (None if v != v else v) for c, v in row.items()} for row in frame[contract.features].to_dict("records")]
    server = Server(home, params_path)
    server.wait_ready()
    statuses: Counter[int] = Counter()
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    period = 4 / RATE  # each of 4 threads sends RATE/4 requests per second

    def load(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            i, next_at = worker, time.monotonic()
            while not stop.is_set():
                batch = [{**records[(i * BATCH + k) % len(records)], "request_id": f"soak-{worker}-{i}-{k}"}
                         for k in range(BATCH)]
                try:
                    r = c.post("/predict", json={"records": batch})
                    code = r.status_code
                    ids = [p["request_id"] for p in r.json()["predictions"]] if code == 200 else []
                except httpx.HTTPError:
                    code, ids = 0, []
                with lock:
                    statuses[code] += 1
                    answered.extend(ids)
                i += 4
                next_at += period
                time.sleep(max(0.0, next_at - time.monotonic()))

    threads = [threading.Thread(target=load, args=(w,), daemon=True) for w in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    rss: list[tuple[float, float]] = []
    swaps = canary_changes = 0
    next_move = started + 30
    with httpx.Client(base_url=server.url, timeout=30) as admin:
        while (now := time.monotonic()) - started < MINUTES * 60:
            if now - started >= 60:
                rss.append((now - started, rss_mb(server.proc.pid)))
            if now >= next_move:
                if (swaps + canary_changes) % 2 == 0:  # hot swap: the champion alias moves
                    current = client.get_model_version_by_alias(name, "champion").version
                    client.set_registered_model_alias(name, "champion", v2 if current == v1 else v1)
                    swaps += 1
                else:  # the canary fraction changes at run time
                    admin.put("/routes", json={"canary_fraction": [0.0, 0.1, 0.25][canary_changes % 3]})
                    canary_changes += 1
                next_move += 30
            time.sleep(5)
    stop.set()
    for t in threads:
        t.join(60)
    seconds = time.monotonic() - started
    with httpx.Client(base_url=server.url, timeout=30) as admin:
        metrics = admin.get("/metrics").text
    code = server.stop(signal.SIGTERM)
    rows = logged(home / "lake", ("request_id", "route"))
    live = rows[rows["route"] != "shadow"]
    ok = statuses.get(200, 0)
    print(f"soak: {seconds / 60:.1f} min at a target of {RATE:.0f} requests/s ({BATCH} records each), "
          f"{swaps} hot swaps and {canary_changes} canary changes (every 30 s); server exit {code}")
    print(f"requests: {sum(statuses.values())} sent, {ok} answered 200, failed {sum(statuses.values()) - ok} "
          f"({dict(statuses)}); {ok / seconds:.1f} requests/s achieved")
    print(f"prediction log: {len(live)} rows for {len(answered)} answered records "
          f"({'equal' if set(live['request_id']) == set(answered) and len(live) == len(answered) else 'DIFFERENT'}); "
          + ", ".join(line for line in metrics.splitlines() if line.startswith(("ctloop_serving_log_dropped",
                                                                              "ctloop_serving_log_dead"))))
    if rss:
        print(f"server RSS: {rss[0][1]:.0f} MB after 1 min, {rss[-1][1]:.0f} MB at the end, "
              f"slope {slope_per_minute(rss):+.2f} MB/min over {len(rss)} samples")
    v1_v2 = f"v{v1}/v{v2}"
    print(f"models: {v1_v2} logistic regression, alternating as champion and canary")


if __name__ == "__main__":
    main()
