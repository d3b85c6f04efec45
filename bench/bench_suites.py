"""The evaluation suites on one challenger (logistic regression trained on 14 simulated days, 28k rows;
2 test days, 4k rows): wall time of each suite and its headline figures."""

from __future__ import annotations

import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "models" / "support_escalation.yaml"  # the demo model's spec (over models/_defaults.yaml)
sys.path.insert(0, str(REPO / "include"))

from ctloop.core.params import EstimatorSpec, load_params  # noqa: E402
from ctloop.data.simulator import SimulationSpec, simulate_day  # noqa: E402
from ctloop.estimators.pipeline import build_model, build_pipeline  # noqa: E402
from ctloop.evaluation.suites import (  # noqa: E402
    adversarial_suite,
    behavioural_suite,
    budgets_suite,
    golden_suite,
    read_golden,
    shadow_suite,
)


def main() -> None:
    params = load_params(SPEC)
    c, spec = params.dataset, params.evaluation
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(16)]
    frames = [simulate_day(d, SimulationSpec(rows=2000)) for d in days]
    train, test = pd.concat(frames[:14]), pd.concat(frames[14:]).reset_index(drop=True)
    model = build_pipeline(c, "logistic_regression", {"C": 1.0, "max_iter": 1000}).fit(train[c.features], train[c.target])
    scores = model.predict_proba(test[c.features])[:, 1]
    logged = test.assign(request_id=[f"r{i}" for i in range(len(test))], score=scores, prediction=(scores >= 0.5).astype(int))
    labels = pd.DataFrame({"request_id": logged["request_id"], "label": test[c.target]})
    cases = read_golden(REPO / spec.golden.path)
    sample = test.sample(spec.behavioural.sample_rows, random_state=42)
    runs = {
        "golden": lambda: golden_suite(model, model, cases, c, spec),
        "behavioural": lambda: behavioural_suite(model, sample, c, spec),
        "adversarial": lambda: adversarial_suite(model, test, c, spec),
        "budgets": lambda: budgets_suite(model, model, test, c, spec, {"brier_score": 0.14}, {"brier_score": 0.14}),
        "shadow": lambda: shadow_suite(model, logged, labels, c, spec),
    }
    total = 0.0
    print(f"{'suite':<13}{'seconds':>8}  result")
    for name, run in runs.items():
        started = time.perf_counter()
        result = run()
        took = time.perf_counter() - started
        total += took
        figures = ", ".join(f"{k} {v:,.3g}" for k, v in result.metrics.items())
        print(f"{name:<13}{took:8.2f}  {'pass' if result.passed else 'FAIL'}  {figures}")
    print(f"{'all':<13}{total:8.2f}")
    # the budgets' ratios: gradient boosting and a random forest against the linear champion, timed interleaved
    for label, challenger in (("hist_gradient_boosting", build_pipeline(c, "hist_gradient_boosting", {"max_iter": 200})),
                              ("random_forest", build_model(c, params.training.model_copy(update={
                                  "estimator": EstimatorSpec.model_validate({
                                      "class": "sklearn.ensemble.RandomForestClassifier",
                                      "params": {"n_estimators": 200, "min_samples_leaf": 5}})}), "custom")[0])):
        challenger.fit(train[c.features], train[c.target])
        result = budgets_suite(challenger, model, test, c, spec, {}, None)
        m = result.metrics
        print(f"budgets {label} vs logistic_regression: p99 {m['latency_p99_ms']:.1f} vs "
              f"{m['champion_latency_p99_ms']:.1f} ms = {m['latency_p99_ratio']:.2f}x; throughput "
              f"{m['rows_per_second']:,.0f} vs {m['champion_rows_per_second']:,.0f} rows/s = "
              f"{m['throughput_ratio']:.2f}x; {'pass' if result.passed else 'FAIL'}")


if __name__ == "__main__":
    main()
