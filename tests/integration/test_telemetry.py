"""Task cost and ctloop's own metrics: measured task bodies send StatsD gauges (to a real UDP port) and log
their cost to a real MLflow run, where the run's totals stay the sum of its tasks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ctloop.core.metrics import Cost, cost_metrics, measure, statsd_line
from ctloop.core.settings import get_settings
from ctloop.flows.tasks import costed
from tests.alert_helpers import StatsdReceiver


def _burn(seconds: float) -> int:
    import time

    end, n = time.process_time() + seconds, 0
    while time.process_time() < end:
        n += 1
    return n


def test_statsd_line_format_and_measure() -> None:
    assert statsd_line("task.cpu_seconds", 1.25, "g", {"task": "train challenger", "dag": "ctloop_retrain"}) == \
        "ctloop.task.cpu_seconds:1.25|g|#dag:ctloop_retrain,task:train_challenger"
    assert statsd_line("alerts", 1, "c", None, prefix="acme") == "acme.alerts:1|c"
    with pytest.raises(ValueError, match="kind"):
        statsd_line("x", 1, "ms")
    with measure("busy") as cost:
        _burn(0.3)
    assert cost.cpu_seconds >= 0.29 and cost.wall_seconds >= cost.cpu_seconds * 0.9 and cost.max_rss_mb > 10
    with pytest.raises(RuntimeError), measure("fails") as failed:
        _burn(0.05)
        raise RuntimeError("boom")
    assert failed.cpu_seconds >= 0.04, "the cost of a failed block is measured too"
    metrics = cost_metrics([Cost("a", 1.0, 0.5, 100, 10).to_dict(), Cost("b", 2.0, 1.5, 300, None).to_dict()])
    assert metrics["cost.total.wall_seconds"] == 3.0 and metrics["cost.total.cpu_seconds"] == 2.0
    assert metrics["cost.total.max_rss_mb"] == 300 and metrics["cost.total.rows"] == 10 and "cost.b.rows" not in metrics


@pytest.fixture
def statsd(ctloop_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StatsdReceiver]:
    receiver = StatsdReceiver()
    monkeypatch.setenv("CTLOOP_STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("CTLOOP_STATSD_PORT", str(receiver.port))
    get_settings.cache_clear()
    yield receiver
    receiver.close()
    get_settings.cache_clear()


def _wait(receiver: StatsdReceiver, count: int) -> list[tuple[str, float, str, dict[str, str]]]:
    import time

    deadline = time.monotonic() + 5
    while len(receiver.lines) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return receiver.parsed()


def test_costed_tasks_send_gauges_and_keep_the_run_totals(statsd: StatsdReceiver) -> None:
    from ctloop.registry.mlflow_registry import configure_mlflow

    settings = get_settings()
    client = configure_mlflow(settings)
    run_id = client.create_run(client.create_experiment("cost-test")).info.run_id

    with measure("build_training_set") as upstream:
        _burn(0.1)
    upstream.rows = 5000

    @costed("retrain", "train_challenger", rows=lambda r: r["train_rows"], attach=True)
    def train(model: str | None) -> dict:
        _burn(0.3)
        return {"run_id": run_id, "train_rows": 4000, "upstream_costs": [upstream.to_dict()]}

    @costed("retrain", "evaluate", rows=lambda r: r["test_rows"], attach=True)
    def evaluate(model: str | None) -> dict:
        _burn(0.2)
        return {"run_id": run_id, "test_rows": 1000}

    trained = train("support_escalation")
    assert trained["cost"]["task"] == "train_challenger" and trained["cost"]["rows"] == 4000
    lines = _wait(statsd, 4)
    gauges = {(name, tags["task"]): (value, tags) for name, value, kind, tags in lines if kind == "g"}
    cpu, tags = gauges[("ctloop.task.cpu_seconds", "train_challenger")]
    assert cpu >= 0.29 and tags == {"model": "support_escalation", "dag": "support_escalation__retrain",
                                             "task": "train_challenger", "outcome": "success"}
    assert gauges[("ctloop.task.rows", "train_challenger")][0] == 4000
    metrics = client.get_run(run_id).data.metrics
    assert metrics["cost.total.tasks"] == 2 and metrics["cost.build_training_set.rows"] == 5000
    assert metrics["cost.total.rows"] == 9000

    evaluate("support_escalation")
    metrics = client.get_run(run_id).data.metrics
    tasks = ("build_training_set", "train_challenger", "evaluate")
    assert metrics["cost.total.tasks"] == 3 and metrics["cost.total.rows"] == 10000
    assert metrics["cost.total.cpu_seconds"] == pytest.approx(sum(metrics[f"cost.{t}.cpu_seconds"] for t in tasks))
    # a relation, not a clock reading: the total is the sum of what each task measured (a rounded
    # reading such as 0.5999 against 0.6 once failed a clean run)
    assert metrics["cost.total.wall_seconds"] == pytest.approx(sum(metrics[f"cost.{t}.wall_seconds"] for t in tasks))
    assert all(metrics[f"cost.{t}.wall_seconds"] >= metrics[f"cost.{t}.cpu_seconds"] * 0.9 > 0 for t in tasks)

    @costed("ingest", "validate_batch")
    def broken(model: str | None) -> dict:
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        broken("support_escalation")
    lines = _wait(statsd, len(statsd.lines) + 1)
    assert any(name == "ctloop.task.wall_seconds" and tags == {"model": "support_escalation", "task": "validate_batch",
                                                                "dag": "support_escalation__ingest", "outcome": "failed"}
               for name, _, _, tags in lines)


def test_metrics_off_or_unreachable_never_fail(ctloop_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ctloop.core.metrics import emit_counter, emit_gauges

    get_settings.cache_clear()
    emit_gauges("task", {"wall_seconds": 1.0})  # no host: nothing is sent, nothing fails
    monkeypatch.setenv("CTLOOP_STATSD_HOST", "statsd.invalid")
    get_settings.cache_clear()
    emit_gauges("task", {"wall_seconds": 1.0})
    emit_counter("alerts", {"event": "rollback"})
    get_settings.cache_clear()
