"""The promotion gate: a pure function from evaluation results to a decision record with every reason.

Per metric (direction from ``greater_is_better``), the semantics of MLflow's ``MetricThreshold``:
``threshold`` is an absolute floor (or ceiling when lower is better); ``min_absolute_change`` and
``min_relative_change`` are how much the challenger must beat the champion by. ctloop adds a
``tolerance``: a challenger worse than the champion by more than it is rejected; one that neither
improves enough nor falls outside the tolerance gets ``gate.within_tolerance`` (promote or reject).
The first model has no champion and is judged on floors only. A metric that is missing is a rejection.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ctloop.core.task import GREATER_IS_BETTER, worse_by
from ctloop.evaluation.records import ModelEvaluation

if TYPE_CHECKING:
    from ctloop.core.params import GateSpec


@dataclass(frozen=True)
class Check:
    check: str  # floor | change | slice_floor | slice_regression | missing | suite:<name>
    metric: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    challenger: str | None
    champion: str | None
    checks: tuple[Check, ...]

    @property
    def reasons(self) -> list[str]:
        failed = [c.detail for c in self.checks if not c.passed]
        return failed or [c.detail for c in self.checks]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "challenger": self.challenger, "champion": self.champion,
                "reasons": self.reasons, "checks": [asdict(c) for c in self.checks]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateDecision:
        return cls(bool(data["passed"]), data.get("challenger"), data.get("champion"),
                   tuple(Check(**c) for c in data.get("checks", [])))


def _fmt(x: float) -> str:
    return f"{x:.4f}"


def decide(challenger: ModelEvaluation, champion: ModelEvaluation | None, policy: GateSpec,
           suites: list[dict[str, Any]] | None = None) -> GateDecision:
    """``suites``: the evaluation suites' results (``SuiteResult.to_dict()``); each failed check of a
    suite is a failed check of the decision, each passing suite one passing line."""
    checks: list[Check] = []
    for name, rule in policy.metrics.items():
        value = challenger.metrics.get(name)
        if value is None or value != value:
            checks.append(Check("missing", name, False, f"{name}: missing from the challenger's evaluation"))
            continue
        sign = 1.0 if rule.greater_is_better else -1.0
        if rule.threshold is not None:
            ok = sign * (value - rule.threshold) >= 0
            word = ">=" if rule.greater_is_better else "<="
            checks.append(Check("floor", name, ok, f"{name} {_fmt(value)} {'meets' if ok else 'fails'} "
                                                      f"the floor {word} {_fmt(rule.threshold)}"))
        if champion is None:
            continue
        base = champion.metrics.get(name)
        if base is None or base != base:
            checks.append(Check("change", name, True, f"{name}: champion v{champion.version} has no value; "
                                                         "judged on the floor only"))
            continue
        delta = sign * (value - base)  # > 0: better
        need_abs = rule.min_absolute_change if rule.min_absolute_change is not None else 0.0
        improves = delta >= need_abs
        if rule.min_relative_change is not None and base != 0:
            improves = improves and delta / abs(base) >= rule.min_relative_change
        versus = f"{name} {_fmt(value)} vs champion v{champion.version} {_fmt(base)} (change {sign * delta:+.4f})"
        if improves:
            checks.append(Check("change", name, True, f"{versus}: better"))
        elif delta < -rule.tolerance:
            checks.append(Check("change", name, False, f"{versus}: worse beyond tolerance {rule.tolerance}"))
        else:
            ok = policy.within_tolerance == "promote"
            checks.append(Check("change", name, ok, f"{versus}: within tolerance {rule.tolerance} "
                                                       f"(gate.within_tolerance: {policy.within_tolerance})"))
    checks.extend(_slice_checks(challenger, champion, policy))
    for suite in suites or []:
        failed = [c for c in suite["checks"] if not c["passed"]]
        if failed:
            checks.extend(Check(f"suite:{suite['suite']}", c["name"], False, c["detail"]) for c in failed)
        else:
            checks.append(Check(f"suite:{suite['suite']}", suite["suite"], True, suite["summary"]))
    return GateDecision(all(c.passed for c in checks), challenger.version,
                        champion.version if champion else None, tuple(checks))


def _slice_checks(challenger: ModelEvaluation, champion: ModelEvaluation | None, policy: GateSpec) -> list[Check]:
    sp = policy.slices
    checks: list[Check] = []
    for column, values in challenger.slices.items():
        for value, m in values.items():
            score = m.get(sp.metric)
            rows = m.get("rows", 0)
            if score is None or score != score or rows < sp.min_rows:
                continue  # too small or single-class: not judged
            where = f"slice {column}={value} ({int(rows)} rows)"
            if sp.floor is not None and worse_by(sp.metric, sp.floor, score) > 0:
                side = "below the slice floor" if GREATER_IS_BETTER.get(sp.metric, True) else "above the slice ceiling"
                checks.append(Check("slice_floor", sp.metric, False,
                                    f"{where}: {sp.metric} {_fmt(score)} {side} {_fmt(sp.floor)}"))
            if champion is not None and sp.max_regression is not None:
                base = champion.slices.get(column, {}).get(value, {}).get(sp.metric)
                if base is not None and base == base and worse_by(sp.metric, base, score) > sp.max_regression:
                    checks.append(Check("slice_regression", sp.metric, False,
                                        f"{where}: {sp.metric} {_fmt(score)} is {worse_by(sp.metric, base, score):.4f} "
                                        f"worse than champion v{champion.version} ({_fmt(base)}), more than "
                                        f"{sp.max_regression}"))
    if not checks and challenger.slices:
        checks.append(Check("slice_floor", sp.metric, True, f"every slice of {', '.join(challenger.slices)} "
                                                              f"meets its {sp.metric} floor and regression limit"))
    return checks
