"""The production-like stack's files, checked without a Docker engine (there is none on these machines):
docker-compose.yaml's topology and hygiene, .env.example covering every variable, Prometheus scraping what
the stack exposes, and the Grafana dashboard asking for metrics that ``ctloop serve`` really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
ONE_SHOT = {"airflow-init", "minio-init", "mlflow-owners"}
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|ACCESS_KEY|_KEY$")


def test_the_stack_has_every_service_of_the_topology() -> None:
    assert set(SERVICES) >= {
        "postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
        "airflow-worker", "airflow-init", "mlflow", "minio", "ctloop-serve", "statsd-exporter", "prometheus", "grafana"}
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-worker", "airflow-dag-processor"):
        env = SERVICES[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        assert env["AIRFLOW__METRICS__STATSD_ON"] == "true"
        assert "FabAuthManager" in env["AIRFLOW__CORE__AUTH_MANAGER"]
    assert SERVICES["airflow-worker"]["command"] == "celery worker"


def test_every_long_running_service_has_a_healthcheck_and_waits_for_healthy_dependencies() -> None:
    for name, service in SERVICES.items():
        check = service.get("healthcheck", {})
        if name in ONE_SHOT:
            assert check.get("disable") is True, name
            continue
        assert check.get("test"), f"{name}: no healthcheck"
        for dep, how in service.get("depends_on", {}).items():
            wanted = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert how["condition"] == wanted, (name, dep, how)


def test_images_are_pinned_and_the_worker_scales() -> None:
    for name, service in SERVICES.items():
        image = service["image"]
        tag = image.split("${CTLOOP_IMAGE:-", 1)[-1].rstrip("}").rsplit(":", 1)
        assert len(tag) == 2 and tag[1] not in ("", "latest"), f"{name}: image {image!r} is not pinned"
    worker = SERVICES["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker  # `--scale airflow-worker=N` works
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:3\.3\.\d+-python3\.11$", dockerfile, re.M)


def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [kv for k, v in node.items() for kv in _walk(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [kv for i, v in enumerate(node) for kv in _walk(v, f"{path}[{i}]")]
    return [(path, node)]


def test_no_literal_secret_in_the_compose_file() -> None:
    for path, value in _walk(SERVICES):
        text = str(value)
        key = path.rsplit(".", 1)[-1]
        if SECRET_KEY.search(key) and not key.endswith("_FILE"):
            assert "${" in text, f"{path}: a literal secret"
        for userinfo in re.findall(r"://([^@/\s]*)@", text):  # credentials inside URLs
            if ":" in userinfo:
                assert "${" in userinfo.split(":", 1)[1], f"{path}: a literal password in a URL"
    assert ".env" in (REPO / ".gitignore").read_text().split()


def test_env_example_documents_every_variable_the_stack_reads() -> None:
    text = "\n".join(line for line in (REPO / "docker-compose.yaml").read_text().splitlines()
                     if not line.lstrip().startswith("#"))
    used = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", text))  # `$${X}` is the container's own variable
    documented = {line.split("=", 1)[0] for line in (REPO / ".env.example").read_text().splitlines()
                  if line and not line.startswith("#")}
    assert used <= documented, used - documented
    for line in (REPO / ".env.example").read_text().splitlines():
        name, _, value = line.partition("=")
        if SECRET_KEY.search(name) and not line.startswith("#"):
            assert value == "", f".env.example: {name} has a value"


def test_data_lives_in_named_volumes_and_ports_are_the_documented_ones() -> None:
    for name, mount in (("postgres", "/var/lib/postgresql/data"), ("minio", "/data"),
                        ("airflow-scheduler", "/opt/ctloop/home"), ("ctloop-serve", "/opt/ctloop/home")):
        volumes = [v.split(":")[0] for v in SERVICES[name]["volumes"] if v.split(":")[1] == mount]
        assert volumes and volumes[0] in COMPOSE["volumes"], (name, mount)
    published = {p.split(":")[0] for s in SERVICES.values() for p in s.get("ports", [])}
    assert published == {"8080", "5000", "8000", "9090", "3000", "9001"}
    readme = (REPO / "README.md").read_text()
    for port in published:
        assert f"localhost:{port}" in readme, f"port {port} is not in the README's Production section"


def test_prometheus_scrapes_serving_and_airflow_and_grafana_asks_for_real_metrics() -> None:
    from ctloop.serving.metrics import ServingMetrics

    prom = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {"statsd-exporter:9102", "ctloop-serve:8000"}
    serving = next(j for j in prom["scrape_configs"] if j["job_name"] == "ctloop-serve")
    assert serving["authorization"]["credentials_file"] == "/run/secrets/serving_token"
    exported = set()
    for family in ServingMetrics().registry.collect():
        exported |= {family.name, f"{family.name}_total", f"{family.name}_bucket"}
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/ctloop.json").read_text())
    asked = {m for p in dashboard["panels"] for t in p["targets"] for m in re.findall(r"ctloop_serving_\w+", t["expr"])}
    assert asked and asked <= exported, asked - exported
    mapped = {m["name"] for m in yaml.safe_load((REPO / "deploy/statsd/mapping.yml").read_text())["mappings"]}
    airflow_asked = {m for p in dashboard["panels"] for t in p["targets"] for m in re.findall(r"airflow_\w+", t["expr"])}
    assert {re.sub(r"_(count|sum|bucket)$", "", m) for m in airflow_asked} <= mapped


def test_the_dashboard_panels_on_ctloops_own_metrics_read_what_the_exporter_maps() -> None:
    """Drift share and quality per window, champion over time, task cost and alerts: each series the
    dashboard asks for comes out of a statsd_exporter mapping, and the task series are Cost's fields."""
    from ctloop.core.metrics import Cost

    dashboard = json.loads((REPO / "deploy/grafana/dashboards/ctloop.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    asked = {m for e in exprs for m in re.findall(r"ctloop_(?:task|monitor|registry|alerts|rollout|llm)\w*", e)}
    assert {"ctloop_monitor_drift_share", "ctloop_monitor_quality", "ctloop_registry_champion_version",
            "ctloop_task_cpu_seconds", "ctloop_alerts_total", "ctloop_rollout_weight",
            "ctloop_llm_tokens_per_request", "ctloop_llm_cost"} <= asked
    patterns = [re.compile("^" + m["name"].replace("$1", r"\w+") + "$")
                for m in yaml.safe_load((REPO / "deploy/statsd/mapping.yml").read_text())["mappings"]
                if m["name"].startswith("ctloop_")]
    assert all(any(p.match(m) for p in patterns) for m in asked), asked
    fields = set(Cost("t", rows=1).metrics())
    assert {m.removeprefix("ctloop_task_") for m in asked if m.startswith("ctloop_task_")} <= fields
    titles = " ".join(p["title"] for p in dashboard["panels"])
    for wanted in ("DAG runs", "Drift share", "quality", "Champion version", "latency", "Cost", "Staged rollout"):
        assert wanted in titles, wanted

