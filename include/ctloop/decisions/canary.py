"""The serving canary guard: a pure decision from the two routes' recent outcomes (error rate, p99
latency) to stop the canary or let it run, with reasons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctloop.core.params import CanaryGuardSpec


@dataclass(frozen=True)
class GuardDecision:
    stop: bool
    reasons: tuple[str, ...]
    champion: dict[str, Any]
    canary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"stop": self.stop, "reasons": list(self.reasons), "champion": self.champion, "canary": self.canary}


def judge_canary(champion: dict[str, Any], canary: dict[str, Any], policy: CanaryGuardSpec,
                 concurrent: bool = True) -> GuardDecision:
    """Stop the canary when it fails or slows down more than the champion by the policy's margins.

    ``concurrent`` False: the champion's outcomes are not from the same period (the canary serves every key,
    as on a staged rollout's 100% step, so the champion's window is from before). Latency depends on how
    busy the machine is, so it is judged only against a concurrent baseline; the error rate still is."""
    if canary["requests"] < policy.min_requests:
        return GuardDecision(False, (f"{canary['requests']} canary requests, {policy.min_requests} needed",),
                             champion, canary)
    reasons = []
    base_errors = champion["error_rate"] or 0.0
    if canary["error_rate"] - base_errors > policy.max_error_rate_increase:
        reasons.append(f"canary error rate {canary['error_rate']:.1%} vs champion {base_errors:.1%} "
                       f"(allowed increase {policy.max_error_rate_increase:.1%})")
    if concurrent and champion["p99_ms"] is not None and canary["p99_ms"] is not None:
        limit = max(champion["p99_ms"] * policy.max_p99_ratio, champion["p99_ms"] + policy.min_p99_increase_ms)
        if canary["p99_ms"] > limit:
            reasons.append(f"canary p99 {canary['p99_ms']:.1f} ms vs champion {champion['p99_ms']:.1f} ms "
                           f"(limit {limit:.1f} ms)")
    return GuardDecision(bool(reasons), tuple(reasons), champion, canary)
