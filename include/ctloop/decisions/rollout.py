"""Staged rollout: the pure analysis of one step (in the way of Argo Rollouts' AnalysisRun).

While ``@candidate`` serves a step's weight of request keys, evidence is measured again and again (each a
:class:`StepEvidence`: both routes over the same period). :func:`judge_step` turns the step's
measurements so far into a :class:`StepAnalysis`:

* **Failed** when the server's guard stopped the candidate, or any metric failed more often than its
  ``failure_limit`` allows; the action is ``abort`` (weight 0 at once).
* **Successful** when the step has its minimum requests and time, and every metric's latest measurement
  meets its ``success`` condition; the action is ``next`` (the next weight), or ``promote`` after the
  last step.
* **Inconclusive** when the step's timeout passed without either (too little traffic, no labels where
  the step requires them, or a metric between its two conditions); the action is ``pause``: a person
  resumes or aborts.
* otherwise **Running**: ``wait`` for the next measurement.

A metric with no value (no labels yet, no latency on a route) is not judged, unless the step requires
labels and it is ``quality_drop``. Latency (``p99_ratio``) and the score distribution (``score_distance``)
are judged only against a concurrent baseline: at the 100% step the champion serves nothing at the same
time, and what it served earlier is another period's load and another period's requests (the first
clean-clone demo with rollouts left a good v3 undecided at 100% on 28 ms against the champion's earlier
13 ms, as the server's guard had stopped a good v2 on the same stale baseline; on real flights, a v2 that
passed 25 and 50% was aborted at 100% on a normed Wasserstein distance of 0.401 between one day's flights
and the previous day's, a day whose departure delays had drifted). Errors, and labeled quality once labels
arrive, are judged at every step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from ctloop.core.params import ROLLOUT_METRICS
from ctloop.monitoring.records import RouteStats, StepEvidence

if TYPE_CHECKING:
    from ctloop.core.params import MetricCondition, RolloutSpec

__all__ = ["MetricResult", "RouteStats", "StepAnalysis", "StepEvidence", "judge_step"]

Outcome = Literal["Running", "Successful", "Failed", "Inconclusive"]
Action = Literal["wait", "next", "promote", "abort", "pause"]
# comparisons of the two routes that mean something only over the same period (not at the 100% step)
CONCURRENT_ONLY = ("p99_ratio", "score_distance", "tokens_ratio")


@dataclass(frozen=True)
class MetricResult:
    name: str
    value: float | None
    outcome: Outcome
    failures: int
    reason: str


@dataclass(frozen=True)
class StepAnalysis:
    step: int  # 0-based index into rollout.steps
    weight: float
    outcome: Outcome
    action: Action
    next_weight: float | None  # the weight to set now (0.0 on abort; None: leave it)
    reasons: tuple[str, ...]
    metrics: tuple[MetricResult, ...]
    measurements: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _worse(name: str, value: float, bound: float) -> bool:
    return value > bound if ROLLOUT_METRICS[name] else value < bound


def _judge_metric(name: str, rule: MetricCondition, measured: Sequence[StepEvidence]) -> MetricResult:
    values = [v for e in measured if (v := e.metric(name)) is not None]
    if not values:
        return MetricResult(name, None, "Running", 0, f"{name}: no measurement yet")
    failures = sum(_worse(name, v, rule.failure) for v in values)
    latest = values[-1]
    sense = "<=" if ROLLOUT_METRICS[name] else ">="
    if failures > rule.failure_limit:
        return MetricResult(name, latest, "Failed", failures,
                            f"{name}: {failures} of {len(values)} measurements beyond the failure condition "
                            f"{sense} {rule.failure} (limit {rule.failure_limit}); latest {latest:.4g}")
    if _worse(name, latest, rule.success):
        return MetricResult(name, latest, "Running", failures,
                            f"{name}: {latest:.4g}, not yet {sense} {rule.success}")
    return MetricResult(name, latest, "Successful", failures, f"{name}: {latest:.4g} {sense} {rule.success}")


def judge_step(step: int, measured: Sequence[StepEvidence], policy: RolloutSpec) -> StepAnalysis:
    """The outcome of rollout step ``step`` from its measurements so far (oldest first; the last is now)."""
    spec = policy.steps[step]
    last_step = step == len(policy.steps) - 1

    def decide(outcome: Outcome, reasons: list[str], metrics: tuple[MetricResult, ...] = ()) -> StepAnalysis:
        action: Action = {"Running": "wait", "Failed": "abort", "Inconclusive": "pause",
                          "Successful": "promote" if last_step else "next"}[outcome]
        weight = {"abort": 0.0, "promote": 1.0}.get(action)
        if action == "next":
            weight = policy.steps[step + 1].weight
        return StepAnalysis(step, spec.weight, outcome, action, weight, tuple(reasons), metrics, len(measured))

    if not measured:
        return decide("Running", ["no measurement yet"])
    now = measured[-1]
    if now.guard_stopped:
        return decide("Failed", ["the server's canary guard stopped the candidate"])
    timed_out = now.elapsed_seconds >= spec.timeout_seconds
    enough = [e for e in measured if e.candidate.requests >= spec.min_requests]  # noisy before the minimum
    waiting = []
    if now.candidate.requests < spec.min_requests:
        waiting.append(f"{now.candidate.requests} candidate requests, {spec.min_requests} needed")
    if now.elapsed_seconds < spec.min_seconds:
        waiting.append(f"{now.elapsed_seconds:.0f} s on the step, {spec.min_seconds:.0f} s needed")
    if spec.require_labels and now.labeled < spec.min_labeled:
        waiting.append(f"{now.labeled} labeled candidate requests, {spec.min_labeled} needed")
    concurrent = spec.weight < 1.0
    metrics = tuple(_judge_metric(name, rule, enough) if concurrent or name not in CONCURRENT_ONLY else
                    MetricResult(name, None, "Running", 0, f"{name}: not judged at 100% (no concurrent champion)")
                    for name, rule in policy.analysis.items())
    judged = [m for m in metrics if m.value is not None or (m.name == "quality_drop" and spec.require_labels)]
    failed = [m.reason for m in judged if m.outcome == "Failed"]
    if failed:
        return decide("Failed", failed, metrics)
    pending = [m.reason for m in judged if m.outcome != "Successful"]
    if not waiting and not pending:
        return decide("Successful", [m.reason for m in judged] or ["no metric measured"], metrics)
    if timed_out:
        return decide("Inconclusive", [f"step timeout {spec.timeout_seconds:.0f} s passed", *waiting, *pending],
                      metrics)
    return decide("Running", [*waiting, *pending], metrics)
