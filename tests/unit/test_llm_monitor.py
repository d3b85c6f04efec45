"""An LLM app's window: the limits judged (property-based) and the tickets' text drift measured by Evidently
on the simulator's tickets (a product launched in another script moves the text; a stable day does not)."""

from __future__ import annotations

from datetime import date

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from ctloop.core.apps import LlmMonitoringSpec
from ctloop.data.simulator import SimulationSpec, simulate_day
from ctloop.decisions.llm_monitor import judge_window
from ctloop.monitoring.llm import text_drift, version_stats
from ctloop.monitoring.records import VersionStats

rates = st.floats(0, 1, allow_nan=False)


@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), rates, rates), min_size=1, max_size=4),
       st.integers(1, 3 * 10**6), rates, rates)
def test_a_window_alerts_exactly_when_a_limit_is_exceeded(versions: list[tuple[int, int, float, float]], budget: int,
                                                          max_schema: float, max_refusal: float) -> None:
    stats = [VersionStats(str(i), 10, a, b, 0.0, 0.0, s, r, 0.0, None, {}) for i, (a, b, s, r) in enumerate(versions)]
    policy = LlmMonitoringSpec(daily_token_budget=budget, max_schema_failure_rate=max_schema, max_refusal_rate=max_refusal)
    decision = judge_window(stats, policy, None)
    over = (sum(a + b for a, b, _, _ in versions) > budget or any(s > max_schema for _, _, s, _ in versions)
            or any(r > max_refusal for _, _, _, r in versions))
    assert decision.alert == over and bool(decision.reasons) == over


def _texts(day: date, scenario: str) -> pd.Series:
    spec = SimulationSpec(scenario=scenario, drift_start=date(2026, 1, 1), rows=600, seed=3, text=True)
    return simulate_day(day, spec)["subject"]


def test_the_tickets_text_drifts_when_a_product_launches_in_another_script() -> None:
    reference = pd.concat([_texts(date(2026, 1, d), "stable") for d in (1, 2)], ignore_index=True)
    assert text_drift(reference, _texts(date(2026, 1, 3), "stable"))["drift"] is False  # type: ignore[index]
    shifted = text_drift(reference, _texts(date(2026, 1, 20), "text_shift"))
    assert shifted is not None and shifted["drift"] is True
    assert text_drift(reference.head(10), _texts(date(2026, 1, 3), "stable")) is None  # too few to judge


def test_version_stats_count_tokens_cost_and_failures_per_version() -> None:
    frame = pd.DataFrame({
        "prompt_version": ["1", "1", "2", "2"], "error": [None, None, None, "DependencyUnavailable"],
        "input_tokens": [100, 120, 80, None], "output_tokens": [20, 30, 10, None], "cost": [0.1, 0.2, 0.05, None],
        "schema_valid": [True, False, True, None], "refused": [False, False, True, None],
        "latency_ms": [10.0, 30.0, 5.0, None],
        "tool_ms": ['{"search_kb": 1.0}', '{"search_kb": 3.0}', '{"search_kb": 2.0}', None]})
    one, two = version_stats(frame)
    assert (one.requests, one.input_tokens + one.output_tokens, one.schema_failure_rate) == (2, 270, 0.5)
    assert one.tool_ms == {"search_kb": 2.0} and abs(one.cost - 0.3) < 1e-9
    assert (two.requests, two.error_rate, two.refusal_rate, two.tokens_per_request) == (2, 0.5, 1.0, 90.0)
