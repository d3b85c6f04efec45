"""ctloop's own metrics and what each task costs.

Metrics are StatsD gauges and counters with DogStatsD tags (``ctloop.task.cpu_seconds:1.2|g|#dag:…,task:…``),
sent over UDP to the same statsd exporter Airflow's metrics go to (docker-compose: ``statsd-exporter`` →
Prometheus → Grafana); the exporter turns the tags into labels (``ctloop_task_cpu_seconds{dag=…,task=…}``).
Off unless ``CTLOOP_STATSD_HOST`` is set. UDP is fire-and-forget: a metric never slows or fails a task.

:func:`measure` is what a task costs: wall time, CPU seconds (this process and the children it waited
for, e.g. DVC's git), peak resident memory and the rows it processed. ``ctloop.flows.tasks`` measures every task
body; the retrain DAG also logs each task's cost and the run's totals to the challenger's MLflow run
(``cost.*`` metrics), so the cost of every deployed version can be read next to its quality.
"""

from __future__ import annotations

import logging
import re
import resource
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-/]+")


def _clean(value: object) -> str:
    return _UNSAFE.sub("_", str(value))[:200]


def statsd_line(name: str, value: float, kind: str, tags: Mapping[str, object] | None = None,
                prefix: str = "ctloop") -> str:
    """One StatsD datagram: ``prefix.name:value|kind|#k:v,…`` (kind ``g`` gauge, ``c`` counter)."""
    if kind not in ("g", "c"):
        raise ValueError(f"statsd kind must be 'g' or 'c', got {kind!r}")
    line = f"{prefix}.{_clean(name)}:{float(value):.10g}|{kind}"
    if tags:
        line += "|#" + ",".join(f"{_clean(k)}:{_clean(v)}" for k, v in sorted(tags.items()) if v is not None)
    return line


def _target() -> tuple[str, int, str] | None:
    from ctloop.core.settings import get_settings

    s = get_settings()
    return None if not s.statsd_host else (s.statsd_host, s.statsd_port, s.statsd_prefix)


def _send(target: tuple[str, int, str], lines: list[str]) -> None:
    host, port, _ = target
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for line in lines:
                sock.sendto(line.encode(), (host, port))
    except OSError as e:  # an unresolvable host or a full buffer: the metric is lost, the task goes on
        log.warning("ctloop metrics: could not send %d metric(s) to %s:%s: %s", len(lines), host, port, e)


def emit_gauges(group: str, values: Mapping[str, float | int | None], tags: Mapping[str, object] | None = None) -> None:
    """``ctloop.<group>.<name>`` gauges; None values are skipped."""
    target = _target()
    if target is not None:
        _send(target, [statsd_line(f"{group}.{k}", float(v), "g", tags, target[2])
                       for k, v in values.items() if v is not None])


def emit_counter(name: str, tags: Mapping[str, object] | None = None, value: int = 1) -> None:
    target = _target()
    if target is not None:
        _send(target, [statsd_line(name, value, "c", tags, target[2])])


@dataclass
class Cost:
    """What one task took. ``rows`` is set by the task (rows read, validated, trained on or scored)."""

    task: str
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    max_rss_mb: float = 0.0
    rows: int | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metrics(self) -> dict[str, float]:
        out = {"wall_seconds": self.wall_seconds, "cpu_seconds": self.cpu_seconds, "max_rss_mb": self.max_rss_mb}
        if self.rows is not None:
            out["rows"] = float(self.rows)
        return out | self.extra


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@contextmanager
def measure(task: str) -> Iterator[Cost]:
    """Measure the block; the yielded :class:`Cost` is filled in when the block ends (also on error)."""
    cost = Cost(task)
    wall, cpu = time.perf_counter(), _cpu()
    try:
        yield cost
    finally:
        cost.wall_seconds = round(time.perf_counter() - wall, 4)
        cost.cpu_seconds = round(_cpu() - cpu, 4)
        cost.max_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def total(costs: list[dict[str, Any]]) -> dict[str, float]:
    """The run's totals over its tasks' costs (as :meth:`Cost.to_dict` wrote them)."""
    return {"wall_seconds": round(sum(c["wall_seconds"] for c in costs), 4),
            "cpu_seconds": round(sum(c["cpu_seconds"] for c in costs), 4),
            "max_rss_mb": max((c["max_rss_mb"] for c in costs), default=0.0),
            "rows": float(sum(c["rows"] or 0 for c in costs))}


def task_metrics(costs: list[dict[str, Any]]) -> dict[str, float]:
    return {f"cost.{c['task']}.{k}": float(v) for c in costs for k, v in Cost(**c).metrics().items()}


def cost_metrics(costs: list[dict[str, Any]]) -> dict[str, float]:
    """MLflow metric keys: ``cost.<task>.<what>`` for each task and ``cost.total.<what>`` for the run."""
    return task_metrics(costs) | {f"cost.total.{k}": v for k, v in total(costs).items()}
