"""An LLM app's monitoring window judged against its limits (``monitoring`` in ``apps/<name>.yaml``): the
day's tokens against the daily budget, each version's output-schema failure rate and refusal rate, and the
drift of the tickets' text. Pure: the record says what is wrong and why; the flow alerts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctloop.core.apps import LlmMonitoringSpec
    from ctloop.monitoring.records import VersionStats


@dataclass(frozen=True)
class LlmWindowDecision:
    alert: bool
    reasons: tuple[str, ...]
    tokens: int
    cost: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge_window(stats: list[VersionStats], policy: LlmMonitoringSpec, text_drift: dict[str, Any] | None
                 ) -> LlmWindowDecision:
    tokens = sum(s.input_tokens + s.output_tokens for s in stats)
    cost = sum(s.cost for s in stats)
    reasons = []
    if tokens > policy.daily_token_budget:
        reasons.append(f"{tokens} tokens, over the daily budget of {policy.daily_token_budget}")
    for s in stats:
        if s.schema_failure_rate > policy.max_schema_failure_rate:
            reasons.append(f"v{s.version}: {s.schema_failure_rate:.1%} of answers off the output schema (limit "
                           f"{policy.max_schema_failure_rate:.1%})")
        if s.refusal_rate > policy.max_refusal_rate:
            reasons.append(f"v{s.version}: {s.refusal_rate:.1%} refusals (limit {policy.max_refusal_rate:.1%})")
    if text_drift and text_drift["drift"]:
        moved = [c for c, d in text_drift["columns"].items() if d["drift"]]
        reasons.append(f"the tickets' text drifted ({', '.join(moved)})")
    return LlmWindowDecision(bool(reasons), tuple(reasons), tokens, cost)
