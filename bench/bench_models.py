"""Many models on one Airflow: 1, 10, 25 and 50 generated model specs (copies of the support-escalation
spec under other names, every fifth one a regression on the flights contract).

Per size, printed:
* the DAG factory's parse time as the DAG processor measures it (``DagBag``'s own ``FileLoadStat``
  duration for ``dags/ctloop_models.py``; goal <= 2 s at 50 models), in a fresh interpreter, and the same
  for a task run, which parses only its own DAG (``_AIRFLOW_PARSING_CONTEXT_DAG_ID``);
* ``ctloop models --json`` wall time (with the SQLite MLflow registry, no champions yet);
* the scheduler loop with every DAG idle (unpaused, nothing due): Airflow's own
  ``scheduler.scheduler_loop_duration`` timer over StatsD, median and p95 over a minute, at the sizes in
  ``BENCH_SCHEDULER_COUNTS`` (default 1,10,50; empty: none).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO)]
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
SIZES = [int(n) for n in os.environ.get("BENCH_MODEL_COUNTS", "1,10,25,50").split(",")]
SCHEDULER_SIZES = [int(n) for n in os.environ.get("BENCH_SCHEDULER_COUNTS", "1,10,50").split(",") if n]
CTLOOP = str(Path(sys.executable).with_name("ctloop"))

PARSE = """
import json, os, time
from airflow.dag_processing.dagbag import DagBag
t = time.perf_counter()
bag = DagBag(dag_folder={factory!r})
wall = time.perf_counter() - t
stat = bag.dagbag_stats[0]
print(json.dumps({{"duration": stat.duration.total_seconds() if hasattr(stat.duration, "total_seconds")
                  else float(stat.duration), "dags": len(bag.dag_ids), "errors": len(bag.import_errors), "wall": wall}}))
"""


def write_models(root: Path, n: int) -> Path:
    import yaml

    from ctloop.core.params import read_spec

    models = root / f"models-{n}"
    models.mkdir(parents=True)
    shutil.copy(REPO / "models" / "_defaults.yaml", models / "_defaults.yaml")
    binary = yaml.safe_load((REPO / "models" / "support_escalation.yaml").read_text())
    regression = read_spec(REPO / "examples" / "flights_arrival" / "params.yaml")
    for i in range(n):
        spec = json.loads(json.dumps(regression if i % 5 == 4 else binary))
        spec["dataset"].pop("name", None)
        spec.get("training", {}).pop("registered_model", None)
        spec.get("training", {}).pop("experiment", None)
        spec["schedule"] = {**spec.get("schedule", {}), "start_date": "2030-01-01"}  # unpaused, nothing due: idle
        (models / f"model_{i:02d}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return models


def parse(models: Path, home: Path, dag_id: str | None = None) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("CTLOOP_PARAMS", "CTLOOP_MODEL")}
    env |= {"CTLOOP_MODELS_DIR": str(models), "CTLOOP_HOME": str(home), "AIRFLOW_HOME": str(home / "airflow"),
            "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(REPO / "plugins")])}
    if dag_id:
        env["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = dag_id
    code = PARSE.format(factory=str(REPO / "dags" / "ctloop_models.py"))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def models_verb(models: Path, home: Path) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if k not in ("CTLOOP_PARAMS", "CTLOOP_MODEL")}
    env |= {"CTLOOP_MODELS_DIR": str(models), "CTLOOP_HOME": str(home)}
    t = time.perf_counter()
    done = subprocess.run([CTLOOP, "models", "--json"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return time.perf_counter() - t, len(json.loads(done.stdout)["models"])


def scheduler_idle(models: Path, home: Path, n: int) -> list[float]:
    from ctloop.core.settings import Settings
    from ctloop.dev.local_airflow import LocalAirflow, free_port
    from tests.alert_helpers import StatsdReceiver

    receiver = StatsdReceiver()
    settings = Settings(home=home, models_dir=models, project_dir=REPO)
    airflow = LocalAirflow.from_settings(settings, port=free_port(), extra_env={
        "AIRFLOW__METRICS__STATSD_ON": "True", "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(receiver.port), "AIRFLOW__METRICS__STATSD_PREFIX": "airflow"})
    with airflow:
        dag_ids = [f"model_{i:02d}__{flow}" for i in range(n) for flow in ("ingest", "retrain", "monitor", "labels",
                                                                            "rollback", "approve", "rollout")]
        airflow.wait_for_dags(dag_ids, timeout=600)
        for dag_id in dag_ids:  # idle: unpaused, but the schedule ends before now and nothing is triggered
            airflow.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        receiver.lines.clear()
        time.sleep(60)
    loops = [value for name, value, kind, _ in receiver.parsed() if name == "airflow.scheduler.scheduler_loop_duration"]
    receiver.close()
    return loops


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="ctloop-bench-models-"))
    print(f"{'models':>7}{'DAGs':>6}{'parse s (DagBag stat)':>23}{'task-run parse s':>18}{'ctloop models s':>17}")
    sizes = []
    for n in SIZES:
        models = write_models(root, n)
        home = root / f"home-{n}"
        full = parse(models, home)
        assert full["errors"] == 0 and full["dags"] == 6 * n, full
        one = parse(models, home, dag_id=f"model_{n - 1:02d}__monitor")
        assert one["dags"] == 1, one
        seconds, listed = models_verb(models, home)
        assert listed == n
        print(f"{n:>7}{full['dags']:>6}{full['duration']:>23.2f}{one['duration']:>18.3f}{seconds:>17.2f}")
        sizes.append((models, home, n))
    for models, home, n in sizes:
        if n not in SCHEDULER_SIZES:
            continue
        loops = sorted(scheduler_idle(models, home / "idle", n))
        if loops:
            print(f"scheduler loop, {n:>2} models ({6 * n:>3} DAGs idle), {len(loops)} loops in 60 s: median "
                  f"{statistics.median(loops):.0f} ms, p95 {loops[int(0.95 * (len(loops) - 1))]:.0f} ms")
        else:
            print(f"scheduler loop, {n} models: no scheduler_loop_duration timer received (StatsD off?)")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
