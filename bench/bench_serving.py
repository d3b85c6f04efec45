"""`ctloop serve` against `mlflow models serve` for the same registered model version, on loopback, with a
real HTTP load generator (hey, from Debian). Goals: >= 2x MLflow's throughput at the same worker count
(one), and p99 <= 20 ms at a steady 250 req/s with prediction logging on.

Servers one at a time (the machine has 2 cores, and hey needs one):
- ctloop serve, default: the verified compiled scorer for the linear pipeline, micro-batched
- ctloop serve with serving.compiled off: scikit-learn's predict_proba, adaptive micro-batching only
- mlflow models serve --workers 1 --env-manager local (its FastAPI scoring server)
then, for a gradient-boosting model and a random forest (issue: p99 <= 10 ms at a steady 250 req/s and >= 20x
MLflow's throughput): ctloop serve, default (ONNX Runtime when the converted model reproduces it, else
scikit-learn), and mlflow models serve on the same version.
Each gets: maximum throughput (16 connections, no rate limit) and steady rates (hey -q per connection).
Single-row requests, the same record body; ctloop logs every prediction to the lake as in production.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "models" / "support_escalation.yaml"  # the demo model's spec (over models/_defaults.yaml)
sys.path[:0] = [str(REPO / "include"), str(REPO)]
from ctloop.core.params import read_spec  # noqa: E402

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
SECONDS = int(os.environ.get("BENCH_SERVING_SECONDS", "15"))
# a subset: BENCH_SERVING_MODELS=hist_gradient_boosting,random_forest (default: linear, sklearn and both trees)
ONLY = set(filter(None, os.environ.get("BENCH_SERVING_MODELS", "").split(",")))
BIN = Path(sys.executable).parent


def hey(url: str, body: Path, connections: int, rate_per_connection: float | None = None) -> dict[str, float]:
    cmd = ["hey", "-z", f"{SECONDS}s", "-c", str(connections), "-m", "POST", "-T", "application/json",
           "-D", str(body)]
    if rate_per_connection:
        cmd += ["-q", str(rate_per_connection)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    codes = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", out))
    latency = dict(re.findall(r"(\d+)% in ([\d.]+) secs", out))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50_ms": float(latency["50"]) * 1000, "p99_ms": float(latency["99"]) * 1000,
            "ok": int(codes.get("200", 0)), "failed": sum(int(n) for c, n in codes.items() if c != "200")}


def wait_http(url: str, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(url)


def measure(name: str, url: str, body: Path, rates: list[int]) -> list[tuple[str, str, dict[str, float]]]:
    hey(url, body, 4, None)  # warm-up pass, not reported
    rows = [(name, "max throughput, 16 connections", hey(url, body, 16))]
    for rate in rates:
        rows.append((name, f"steady {rate} req/s (10 connections)", hey(url, body, 10, rate / 10)))
    return rows


def main() -> None:
    if shutil.which("hey") is None:
        sys.exit("hey is not installed (make bench installs it: apt-get install hey)")
    import json

    import yaml

    from ctloop.core.params import load_params
    from ctloop.core.settings import Settings
    from ctloop.dev.local_airflow import free_port
    from ctloop.estimators.pipeline import build_pipeline, default_pipeline
    from tests.serving_helpers import Server, register, training_frame

    tmp = Path(tempfile.mkdtemp(prefix="ctloop-bench-serving-"))
    home = tmp / "home"
    params = load_params(SPEC)
    settings = Settings(home=home, params=SPEC)
    frame = training_frame(params, rows=20_000)
    version = register(settings, params, build_pipeline(params.dataset, "logistic_regression",
                                                        params.training.models["logistic_regression"]),
                       frame, ("champion",))
    record = {c: (None if v != v else v) for c, v in frame[params.dataset.features].iloc[0].to_dict().items()}
    ours, theirs = tmp / "ctloop.json", tmp / "mlflow.json"
    ours.write_text(json.dumps(record))
    theirs.write_text(json.dumps({"dataframe_records": [record]}))
    raw = read_spec(SPEC)
    raw["serving"]["compiled"] = False
    raw["serving"]["onnx"] = False
    sklearn_params = tmp / "params-sklearn.yaml"
    sklearn_params.write_text(yaml.safe_dump(raw))
    results: list[tuple[str, str, dict[str, float]]] = []
    paths: dict[str, str] = {}

    def ctloop_serve(name: str, params_path: Path) -> None:
        server = Server(home, params_path)
        try:
            server.wait_ready()
            results.extend(measure(name, f"{server.url}/predict", ours, [150, 250]))
            with server.client() as c:
                metrics = c.get("/metrics").text
                paths[name] = c.get("/model").json()["champion"]["scoring"]
            logged = re.search(r"ctloop_serving_log_written_rows_total ([\d.e+]+)", metrics)
            dropped = re.search(r"ctloop_serving_log_dropped_rows_total ([\d.e+]+)", metrics)
            print(f"{name}: {paths[name]}; prediction log rows written {logged.group(1) if logged else '?'}, "
                  f"dropped {dropped.group(1) if dropped else '?'}")
        finally:
            server.stop()

    def mlflow_serve(name: str, served_version: str) -> None:
        port = free_port()
        env = {**os.environ, "MLFLOW_TRACKING_URI": settings.tracking_uri,
               "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # it execs uvicorn by name
        mlflow_log = (tmp / "mlflow-serve.log").open("w")
        proc = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m",
                                 f"models:/{params.training.registered_model}/{served_version}",
                                 "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port), "--workers", "1"],
                                env=env, stdout=mlflow_log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_http(f"http://127.0.0.1:{port}/health")
            results.extend(measure(name, f"http://127.0.0.1:{port}/invocations", theirs, [150, 250]))
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(30)

    if not ONLY or "linear" in ONLY:
        ctloop_serve("ctloop serve (compiled)", SPEC)
        mlflow_serve("mlflow models serve (1 worker)", version)
    if not ONLY or "sklearn" in ONLY:
        ctloop_serve("ctloop serve (scikit-learn, micro-batched)", sklearn_params)
    from sklearn.ensemble import RandomForestClassifier

    from ctloop.registry.mlflow_registry import configure_mlflow

    client = configure_mlflow(settings)
    for label, pipeline in (
            ("hist_gradient_boosting", build_pipeline(params.dataset, "hist_gradient_boosting",
                                                      params.training.models["hist_gradient_boosting"])),
            ("random_forest", default_pipeline(params.dataset, RandomForestClassifier(
                n_estimators=200, min_samples_leaf=5, random_state=0)))):
        if ONLY and label not in ONLY:
            continue
        tree_version = register(settings, params, pipeline, frame, ())
        client.set_registered_model_alias(params.training.registered_model, "champion", tree_version)
        ctloop_serve(f"ctloop serve ({label})", SPEC)
        mlflow_serve(f"mlflow models serve ({label})", tree_version)

    print(f"\nmodel {params.training.registered_model} v{version} (logistic regression, 6 numeric + 4 categorical "
          f"features) and the two tree models, single-row requests, {SECONDS} s per line, hey on the same 2-core "
          f"machine")
    print(f"{'server':<52} {'load':<36} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}")
    for name, load, r in results:
        print(f"{name:<52} {load:<36} {r['rps']:>8.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['failed']:>7}")
    best = {name: r["rps"] for name, load, r in results if load.startswith("max")}
    for name, rps in best.items():
        if name.startswith("mlflow"):
            continue
        label = name[name.index("(") + 1:-1]
        theirs_name = (f"mlflow models serve ({label})" if f"mlflow models serve ({label})" in best
                       else "mlflow models serve (1 worker)")
        if theirs_name not in best:
            continue
        print(f"{name}: {rps / best[theirs_name]:.1f}x {theirs_name}'s throughput; {paths.get(name, '')}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
