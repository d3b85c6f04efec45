"""Automatic rollback while a new champion bakes: the pure decision (the flow that acts on it is
:func:`ctloop.flows.promotion.guard_champion`).

For the first ``promotion.rollback.bake_days`` windows a champion serves, the monitor compares its
labeled quality (on requests it served, judged once their labels arrive) with what ``previous`` had on
its own last labeled windows as champion. A drop beyond ``max_quality_drop`` rolls back to ``previous``
(one compare-and-set step, audited, in the alias history), the rolled-back version loses its gate pass,
and the monitor emits the rollback alert Asset event.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from ctloop.core.task import worse_by

if TYPE_CHECKING:
    from ctloop.core.params import RollbackPolicy

Status = Literal["disabled", "no_previous", "not_baking", "no_labels", "no_reference", "healthy", "rollback"]


@dataclass(frozen=True)
class RollbackDecision:
    window: str
    status: Status
    rollback: bool
    champion: str | None
    previous: str | None
    reasons: list[str]
    champion_quality: float | None = None
    previous_quality: float | None = None
    quality_window: str | None = None
    previous_windows: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide_rollback(window: date, policy: RollbackPolicy, metric: str, champion: str, previous: str | None,
                    first_served: date, quality: dict[str, Any], previous_history: list[tuple[date, float]],
                    previous_replay: float | None = None) -> RollbackDecision:
    """Pure. ``first_served``: the first window the champion served; ``quality``: the monitor's labeled
    quality of this window (its ``quality_window`` and ``labeled_rows``); ``previous_replay``: the
    previous champion's quality on the very same labeled requests (replayed), the comparison of choice;
    ``previous_history``: its labeled quality per window while it was champion, oldest first (used when
    it cannot be replayed)."""
    def decision(status: Status, why: list[str], **kw: Any) -> RollbackDecision:
        return RollbackDecision(window.isoformat(), status, status == "rollback", champion, previous, why, **kw)

    if not policy.enabled:
        return decision("disabled", ["promotion.rollback.enabled is false"])
    if previous is None:
        return decision("no_previous", [f"v{champion} has no @previous to roll back to"])
    judged = quality.get("quality_window")
    if judged is None or quality.get("quality") is None:
        return decision("no_labels", [f"no labeled window of v{champion} yet"])
    judged_day = date.fromisoformat(str(judged))
    served = (judged_day - first_served).days
    if served < 0 or served >= policy.bake_days:
        return decision("not_baking", [f"v{champion} has served since {first_served}; the labeled window {judged} is "
                                       f"outside its {policy.bake_days}-window bake period"])
    rows = int(quality.get("labeled_rows") or 0)
    if rows < policy.min_labeled_rows:
        return decision("no_labels", [f"{rows} labeled rows on {judged}, fewer than {policy.min_labeled_rows}"])
    recent = previous_history[-policy.comparable_windows:]
    if previous_replay is not None:
        theirs, basis, used = previous_replay, "on the same requests, replayed", [str(judged)]
    elif recent:
        theirs = sum(q for _, q in recent) / len(recent)
        basis, used = f"on its last {len(recent)} labeled window(s) as champion", [d.isoformat() for d, _ in recent]
    else:
        return decision("no_reference", [f"no labeled window of v{previous} as champion to compare with"])
    mine = float(quality["quality"])
    common = {"champion_quality": mine, "previous_quality": theirs, "quality_window": str(judged),
              "previous_windows": used}
    drop = worse_by(metric, theirs, mine)  # an error metric (regression RMSE) drops by rising
    line = (f"{metric} of v{champion} on {judged} ({rows} labeled rows) {mine:.4f} vs v{previous} {theirs:.4f} "
            f"{basis}: drop {drop:+.4f}")
    if drop > policy.max_quality_drop:
        return decision("rollback", [f"{line}, beyond {policy.max_quality_drop} during the bake period "
                                     f"(window {served + 1} of {policy.bake_days})"], **common)
    return decision("healthy", [f"{line}, within {policy.max_quality_drop}"], **common)
