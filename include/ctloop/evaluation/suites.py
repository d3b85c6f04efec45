"""Evaluation suites that run on every challenger and feed the gate: golden set, behavioural checks,
adversarial and edge inputs, budgets (latency, throughput, size, calibration) and a shadow replay of
logged production requests. Each suite returns a :class:`SuiteResult` with every check, its figures and
failing examples; the gate turns each into a check of its decision record.

The functions take model objects (anything with ``predict_proba``) and frames, so tests can hand them
models built to fail; :func:`run_suites` is what ``ctloop evaluate`` and ``<model>__retrain`` call.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.estimators.scoring import ScoringError, score_rows

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.core.params import DatasetSpec, EvaluationSpec, Params

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class SuiteCheck:
    name: str
    passed: bool
    detail: str
    examples: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class SuiteResult:
    suite: str
    passed: bool
    checks: list[SuiteCheck]
    metrics: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None  # why the suite had nothing to judge (it then passes and says so)

    @property
    def summary(self) -> str:
        if self.skipped:
            return f"{self.suite}: skipped ({self.skipped})"
        failed = [c.detail for c in self.checks if not c.passed]
        if failed:
            return f"{self.suite}: {len(failed)} of {len(self.checks)} checks failed: {'; '.join(failed)}"
        if len(self.checks) == 1:
            return f"{self.suite}: {self.checks[0].detail}"
        return f"{self.suite}: all {len(self.checks)} checks passed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"summary": self.summary}


def _result(suite: str, checks: list[SuiteCheck], metrics: dict[str, float] | None = None) -> SuiteResult:
    return SuiteResult(suite, all(c.passed for c in checks), checks, metrics or {})


def _scores(model: Any, frame: pd.DataFrame, contract: DatasetSpec) -> Any:
    import numpy as np

    scored = score_rows(model, frame, contract)
    if contract.task == "multiclass":  # one row of class probabilities per record (nan where rejected)
        width = len(contract.classes)
        return np.array([[np.nan] * width if s is None else s for s in scored.scores], dtype="float64").reshape(-1, width)
    return np.array([np.nan if s is None else s for s in scored.scores])


def _classes(output: Any, contract: DatasetSpec) -> Any:
    """A multiclass model's predicted class per row (-1 where the row was rejected)."""
    import numpy as np

    best = np.asarray(contract.classes)[np.nan_to_num(output, nan=-1.0).argmax(axis=1)]
    return np.where(np.isnan(output).any(axis=1), -1, best)


# golden set --------------------------------------------------------------------------------------------

def read_golden(path: Path) -> list[dict[str, Any]]:
    from ctloop.core.errors import DataUnreadable

    if not path.exists():
        return []
    cases = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
            case["features"], case["expected"], case["case_id"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataUnreadable(f"{path}:{n}: expected a JSON object with case_id, features and expected "
                                 f"({e.__class__.__name__}: {e})") from e
        cases.append(case)
    return cases


def golden_suite(challenger: Any, champion: Any | None, cases: list[dict[str, Any]], contract: DatasetSpec,
                 spec: EvaluationSpec) -> SuiteResult:
    import numpy as np
    import pandas as pd

    if not cases:
        return SuiteResult("golden", True, [], skipped=f"no golden cases in {spec.golden.path}")
    frame = pd.DataFrame([c["features"] for c in cases])

    def correct(scores: Any) -> list[bool]:
        out = []
        for case, s in zip(cases, scores, strict=True):
            if contract.task == "multiclass":  # the most probable class is the expected one
                out.append(bool(not np.isnan(s).any() and contract.classes[int(np.argmax(s))] == int(case["expected"])))
                continue
            if not contract.is_classifier:  # a value within the case's tolerance (or golden.tolerance)
                tolerance = float(case.get("tolerance", spec.golden.tolerance))
                out.append(bool(s == s and abs(s - float(case["expected"])) <= tolerance))
                continue
            ok = s == s and int(s >= spec.threshold) == int(case["expected"])
            ok = ok and (case.get("min_score") is None or s >= case["min_score"])
            ok = ok and (case.get("max_score") is None or s <= case["max_score"])
            out.append(bool(ok))
        return out

    mine = _scores(challenger, frame, contract)
    ok = correct(mine)
    rate = sum(ok) / len(cases)
    wrong = [{"case_id": c["case_id"], "expected": c["expected"], "score": np.round(s, 4).tolist(), "note": c.get("note")}
             for c, s, k in zip(cases, mine, ok, strict=True) if not k]
    checks = [SuiteCheck("pass_rate", rate >= spec.golden.min_pass_rate,
                         f"golden set: {sum(ok)}/{len(cases)} cases right ({rate:.1%}; needs "
                         f"{spec.golden.min_pass_rate:.0%})", wrong[:MAX_EXAMPLES])]
    flips: list[dict[str, Any]] = []
    if champion is not None:
        theirs = correct(_scores(champion, frame, contract))
        flips = [w for w, k, t in zip(cases, ok, theirs, strict=True) if t and not k]
        blocking = [f["case_id"] for f in flips if f["case_id"] not in spec.golden.allowed_flips]
        checks.append(SuiteCheck("flips", not blocking,
                                 f"golden set: {len(flips)} case(s) the champion got right flipped to wrong"
                                 + (f", not allowed: {', '.join(blocking[:MAX_EXAMPLES])}" if blocking else ""),
                                 [{"case_id": f["case_id"], "note": f.get("note")} for f in flips][:MAX_EXAMPLES]))
    return _result("golden", checks, {"golden_pass_rate": rate, "golden_flips": float(len(flips)),
                                      "golden_cases": float(len(cases))})


# behavioural -------------------------------------------------------------------------------------------

def behavioural_suite(model: Any, sample: pd.DataFrame, contract: DatasetSpec, spec: EvaluationSpec) -> SuiteResult:
    import numpy as np
    import pandas as pd

    b = spec.behavioural
    base = _scores(model, sample, contract)
    checks: list[SuiteCheck] = []
    ids = sample[contract.id].astype(str).tolist() if contract.id in sample.columns else [str(i) for i in range(len(sample))]
    for inv in b.invariance:
        worst = np.zeros(len(sample))
        flipped = np.zeros(len(sample), dtype=bool)
        for value in inv.values:
            changed = sample.assign(**{inv.column: value})
            s = _scores(model, changed, contract)
            if contract.task == "multiclass":  # the largest move of any class's probability; the class flips
                worst = np.maximum(worst, np.abs(s - base).max(axis=1))
                flipped |= _classes(s, contract) != _classes(base, contract)
                continue
            worst = np.maximum(worst, np.abs(s - base))
            if contract.is_classifier:  # a regressor has no decision to flip: its value is judged by the change
                flipped |= (s >= spec.threshold) != (base >= spec.threshold)
        share = float(flipped.mean())
        ok = share <= inv.max_flip_share and float(np.nanmax(worst)) <= inv.max_score_change + 1e-12
        bad = np.argsort(-worst)[:MAX_EXAMPLES]
        checks.append(SuiteCheck(
            f"invariance:{inv.column}", ok,
            f"invariance of {inv.column} over {inv.values}: decision changed on {share:.1%} of rows "
            f"(max {inv.max_flip_share:.1%}), score by up to {float(np.nanmax(worst)):.4f} (max {inv.max_score_change})",
            [{"id": ids[i], "max_score_change": round(float(worst[i]), 4)} for i in bad if worst[i] > 0]))
    for d in b.directional:
        spec_col = contract.columns[d.column]
        moved = pd.to_numeric(sample[d.column], errors="coerce") + d.change
        lo = spec_col.min if spec_col.min is not None else -np.inf
        hi = spec_col.max if spec_col.max is not None else np.inf
        s = _scores(model, sample.assign(**{d.column: moved.clip(lo, hi)}), contract)
        before = base
        if contract.task == "multiclass":  # the probability of the class the check names
            j = contract.classes.index(int(d.target_class))  # type: ignore[arg-type]
            s, before = s[:, j], base[:, j]
        delta = (s - before) * (1 if d.expect == "increase" else -1)  # > 0: the expected direction
        against = np.flatnonzero(delta < -d.tolerance)
        effect = float(np.nanmean(delta))
        ok = len(against) == 0 and effect >= d.min_effect
        checks.append(SuiteCheck(
            f"directional:{d.column}", ok,
            f"{d.column} {d.change:+g} should {d.expect} the score: mean effect {effect:+.4f} (needs >= "
            f"{d.min_effect}), {len(against)} row(s) moved the other way beyond {d.tolerance}",
            [{"id": ids[i], "before": round(float(before[i]), 4), "after": round(float(s[i]), 4)}
             for i in against[:MAX_EXAMPLES]]))
    if b.minimum_functionality:
        cases = pd.DataFrame([c.features for c in b.minimum_functionality])
        s = _scores(model, cases, contract)
        if contract.task == "multiclass":  # the case's expected class is the most probable one
            predicted = _classes(s, contract)
            s = np.where(np.isnan(s).any(axis=1), np.nan, predicted.astype("float64"))
        for case, score in zip(b.minimum_functionality, s, strict=True):
            if contract.task == "multiclass":
                ok = score == score and int(score) == int(case.expect)
            elif contract.is_classifier:
                ok = score == score and int(score >= spec.threshold) == case.expect
            else:
                ok = score == score and abs(score - case.expect) <= case.tolerance
            checks.append(SuiteCheck(f"minimum:{case.name}", bool(ok),
                                     f"'{case.name}': expected {case.expect}, score {score:.4f}"))
    failed = sum(not c.passed for c in checks)
    return _result("behavioural", checks, {"behavioural_failures": float(failed)})


# adversarial and edge inputs ----------------------------------------------------------------------------

def adversarial_cases(base: pd.DataFrame, contract: DatasetSpec, spec: EvaluationSpec) -> dict[str, pd.DataFrame]:
    """Named batches built from one real row: nulls, NaN, +-inf, out-of-range, negatives, unseen and
    empty and very long categories, empty, huge and non-Latin text, wrong types, a single row, and a large
    batch."""
    import numpy as np
    import pandas as pd

    row = base.head(1).reset_index(drop=True)
    cases: dict[str, pd.DataFrame] = {"single row": row}
    cases["every column null"] = row.assign(**{c: None for c in contract.features})
    for c in contract.features:
        cases[f"null {c}"] = row.assign(**{c: None})
        cases[f"empty string {c}"] = row.assign(**{c: ""})
        cases[f"very long string {c}"] = row.assign(**{c: "x" * spec.adversarial.long_text})
    for c in contract.numeric_features:
        col = contract.columns[c]
        cases[f"NaN {c}"] = row.assign(**{c: np.nan})
        cases[f"+inf {c}"] = row.assign(**{c: np.inf})
        cases[f"-inf {c}"] = row.assign(**{c: -np.inf})
        cases[f"negative {c}"] = row.assign(**{c: -1e6})
        cases[f"huge {c}"] = row.assign(**{c: 1e300 if col.max is None else col.max * 1e6 + 1e6})
        cases[f"wrong type {c}"] = row.assign(**{c: "not a number"})
    for c in contract.categorical_features:
        cases[f"unseen category {c}"] = row.assign(**{c: "__never_seen_before__"})
        cases[f"wrong type {c}"] = row.assign(**{c: 12345})
    for c in contract.text_features:  # free text: other scripts, emoji, control characters, no words at all
        cases[f"non-Latin text {c}"] = row.assign(**{c: "Не работает вход 登录失败 تسجيل الدخول"})  # noqa: RUF001
        cases[f"emoji and control characters {c}"] = row.assign(**{c: "😡🔥\x00\t\u200b" * 50})
        cases[f"punctuation only {c}"] = row.assign(**{c: "?!... ---"})
        cases[f"wrong type {c}"] = row.assign(**{c: 12345})
    mixed = [cases["every column null"], *list(cases.values())[1:6]]
    cases["mixed batch"] = pd.concat([f.astype(object) for f in mixed], ignore_index=True)
    cases[f"{spec.adversarial.batch_rows}-row batch"] = base.sample(
        spec.adversarial.batch_rows, replace=True, random_state=0).reset_index(drop=True)
    return cases


def adversarial_suite(model: Any, base: pd.DataFrame, contract: DatasetSpec, spec: EvaluationSpec) -> SuiteResult:
    checks: list[SuiteCheck] = []
    throughput = 0.0
    valid = {"binary": "in [0, 1]", "multiclass": "as class probabilities"}.get(contract.task, "as finite numbers")
    for name, frame in adversarial_cases(base, contract, spec).items():
        started = time.perf_counter()
        try:
            scored = score_rows(model, frame, contract)
        except ScoringError as e:
            checks.append(SuiteCheck(f"adversarial:{name}", False, f"{name}: the model crashed: {e}"[:300]))
            continue
        seconds = time.perf_counter() - started
        if len(frame) >= 1000:
            throughput = len(frame) / seconds
        answered = sum(s is not None for s in scored.scores) + len({r.row for r in scored.rejections})
        ok = answered >= len(frame)
        outcome = (f"{len(frame)} row(s): {sum(s is not None for s in scored.scores)} scored {valid}, "
                   f"{len(scored.rejections)} rejected")
        checks.append(SuiteCheck(f"adversarial:{name}", ok, f"{name}: {outcome}",
                                 [r.reason for r in scored.rejections[:MAX_EXAMPLES]]))
    crashes = sum(not c.passed for c in checks)
    summary = SuiteCheck("adversarial", crashes == 0,
                         f"{len(checks)} adversarial and edge cases: {crashes} crashed" if crashes else
                         f"{len(checks)} adversarial and edge cases: each scored {valid} or rejected with a reason")
    failed = [c for c in checks if not c.passed]
    result = _result("adversarial", [summary, *failed], {"adversarial_cases": float(len(checks)),
                                                         "adversarial_crashes": float(crashes),
                                                         "batch_rows_per_second": throughput})
    return result


# budgets -----------------------------------------------------------------------------------------------

def _interleaved(models: list[Any], batches: list[list[dict[str, Any]]], contract: DatasetSpec) -> list[list[float]]:
    """Milliseconds per call of each model on each batch of request records, through the serving path
    (records -> frame -> ``predict_proba``), the models taking turns batch by batch (who goes first
    alternating), so a busy machine slows them alike and their ratio stays what it is."""
    from ctloop.estimators.scoring import predict_scores, records_frame

    timings: list[list[float]] = [[] for _ in models]
    for i, records in enumerate(batches):
        order = range(len(models)) if i % 2 == 0 else reversed(range(len(models)))
        for m in order:
            started = time.perf_counter()
            predict_scores(models[m], records_frame(records, contract), contract.task, contract.classes)
            timings[m].append((time.perf_counter() - started) * 1000)
    return timings


def _records(frame: pd.DataFrame, contract: DatasetSpec) -> list[dict[str, Any]]:
    import pandas as pd

    return [{c: (None if pd.isna(v) else v) for c, v in r.items()} for r in frame[contract.features].to_dict("records")]


def budgets_suite(model: Any, champion: Any | None, base: pd.DataFrame, contract: DatasetSpec, spec: EvaluationSpec,
                  calibration: dict[str, float], champion_calibration: dict[str, float] | None) -> SuiteResult:
    """Latency and throughput judged as ratios to the champion measured in the same process, interleaved
    (the same model measured 155 ms and 518 ms p99 in two runs on a busy machine: an absolute budget judges the
    machine); the absolute figures are recorded and held only to sanity caps. Size and calibration as set."""
    import numpy as np
    import skops.io

    b = spec.budgets
    models = [model] if champion is None else [model, champion]
    rows = _records(base.sample(b.latency_samples, replace=True, random_state=1), contract)
    batch = _records(base.sample(b.throughput_rows, replace=True, random_state=2), contract)

    def measure() -> tuple[list[float], list[float]]:
        single = _interleaved(models, [[r] for r in rows], contract)
        batches = _interleaved(models, [batch] * 3, contract)
        return ([float(np.percentile(t, 99)) for t in single],
                [b.throughput_rows / (min(t) / 1000) for t in batches])  # the best of three: least disturbed

    p99s, rates = measure()
    if champion is not None and (p99s[0] / max(p99s[1], 1e-6) > b.max_p99_ratio
                                 or rates[0] / max(rates[1], 1e-6) < b.min_throughput_ratio):
        # a p99 is one of the slowest calls: a spike that hit only one model is not repeated in a second round
        again = measure()
        if again[0][0] / max(again[0][1], 1e-6) < p99s[0] / max(p99s[1], 1e-6):
            p99s = again[0]
        if again[1][0] / max(again[1][1], 1e-6) > rates[0] / max(rates[1], 1e-6):
            rates = again[1]
    p99, rows_per_second = p99s[0], rates[0]
    size_mb = len(skops.io.dumps(model)) / 2**20
    metrics = {"latency_p99_ms": p99, "model_size_mb": size_mb, "rows_per_second": rows_per_second}
    checks = [
        SuiteCheck("latency", p99 <= b.p99_latency_ms,
                   f"single-row p99 latency {p99:.1f} ms (sanity cap {b.p99_latency_ms:g} ms)"),
        SuiteCheck("throughput", rows_per_second >= b.min_rows_per_second,
                   f"batch throughput {rows_per_second:,.0f} rows/s (sanity floor {b.min_rows_per_second:,.0f})"),
    ]
    if champion is not None:
        p99_ratio, rate_ratio = p99 / max(p99s[1], 1e-6), rows_per_second / max(rates[1], 1e-6)
        metrics |= {"champion_latency_p99_ms": p99s[1], "latency_p99_ratio": p99_ratio,
                    "champion_rows_per_second": rates[1], "throughput_ratio": rate_ratio}
        checks += [
            SuiteCheck("latency:vs_champion", p99_ratio <= b.max_p99_ratio,
                       f"single-row p99 {p99_ratio:.2f}x the champion's ({p99:.1f} vs {p99s[1]:.1f} ms, measured "
                       f"interleaved; max {b.max_p99_ratio:g}x)"),
            SuiteCheck("throughput:vs_champion", rate_ratio >= b.min_throughput_ratio,
                       f"batch throughput {rate_ratio:.2f}x the champion's ({rows_per_second:,.0f} vs "
                       f"{rates[1]:,.0f} rows/s; min {b.min_throughput_ratio:g}x)"),
        ]
    checks.append(SuiteCheck("size", size_mb <= b.max_model_mb,
                             f"model size {size_mb:.2f} MB (budget {b.max_model_mb} MB)"))
    for metric, limit in (("brier_score", b.max_brier_regression), ("ece", b.max_ece_regression)):
        mine = calibration.get(metric)
        theirs = (champion_calibration or {}).get(metric)
        if mine is None:
            continue
        if theirs is None:
            checks.append(SuiteCheck(f"calibration:{metric}", True, f"{metric} {mine:.4f} (no champion to compare)"))
        else:
            ok = mine - theirs <= limit
            checks.append(SuiteCheck(f"calibration:{metric}", ok, f"{metric} {mine:.4f} vs champion {theirs:.4f} "
                                                                  f"(may worsen by <= {limit})"))
    return _result("budgets", checks, metrics)


# shadow ------------------------------------------------------------------------------------------------

def shadow_suite(model: Any, logged: pd.DataFrame, labels: pd.DataFrame | None, contract: DatasetSpec,
                 spec: EvaluationSpec) -> SuiteResult:
    """Replay logged requests (with the champion's logged decision and score) through the challenger."""
    import numpy as np

    sh = spec.shadow
    if len(logged) < sh.min_rows:
        return SuiteResult("shadow", True, [], skipped=f"{len(logged)} logged request(s) in the last {sh.hours} h, "
                                                        f"fewer than {sh.min_rows}")
    mine = _scores(model, logged, contract)
    logged_scores = logged["score"].to_numpy(dtype="float64")
    if contract.task == "multiclass":  # the same class; the shift of the predicted class's probability
        classes = _classes(mine, contract)
        agreement = float(np.mean(classes == logged["prediction"].to_numpy().astype("int64")))
        shift = float(np.nanmean(np.abs(np.nanmax(mine, axis=1) - logged_scores)))
        same = "same classes"
        mine = classes  # labeled quality below is judged on the classes
    elif contract.is_classifier:
        agreement = float(np.mean((mine >= spec.threshold) == (logged["prediction"].to_numpy() == 1)))
        shift = float(np.nanmean(np.abs(mine - logged_scores)))
        same = "same decisions"
    else:  # a value "agrees" within a quarter of the champion's spread; the shift is in those spreads too
        spread = max(float(np.nanstd(logged_scores)), 1e-12)
        agreement = float(np.mean(np.abs(mine - logged_scores) <= 0.25 * spread))
        shift = float(np.nanmean(np.abs(mine - logged_scores))) / spread
        same = "values within 0.25 std of the champion's"
    metrics = {"shadow_rows": float(len(logged)), "shadow_agreement": agreement, "shadow_mean_score_shift": shift}
    quality_ok: bool | None = None
    detail_q = "no labels yet for the replayed requests"
    if labels is not None and len(labels):
        from sklearn.metrics import f1_score, r2_score, roc_auc_score

        def f1_macro(y: Any, predicted: Any) -> float:
            return float(f1_score(y, predicted, labels=contract.classes, average="macro", zero_division=0))

        joined = logged.assign(_mine=mine).merge(labels[["request_id", "label"]], on="request_id")
        judge, name, theirs_column = {"binary": (roc_auc_score, "roc_auc", "score"),
                                      "multiclass": (f1_macro, "f1_macro", "prediction"),
                                      "regression": (r2_score, "r2_score", "score")}[contract.task]
        if len(joined) >= sh.min_rows and joined["label"].nunique() >= 2 and (
                contract.task != "binary" or joined["label"].nunique() == 2):
            q_mine = float(judge(joined["label"], joined["_mine"]))
            q_theirs = float(judge(joined["label"], joined[theirs_column]))
            quality_ok = q_mine >= q_theirs - sh.quality_tolerance
            metrics |= {f"shadow_{name}": q_mine, f"shadow_champion_{name}": q_theirs}
            detail_q = f"labeled replay ({len(joined)} rows): {name} {q_mine:.4f} vs champion {q_theirs:.4f}"
    agree_ok = agreement >= sh.min_agreement and shift <= sh.max_mean_score_shift
    # a challenger that disagrees but is at least as good on the labeled replay is what a retrain is for
    passed = agree_ok or bool(quality_ok)
    checks = [SuiteCheck("agreement", passed,
                         f"shadow replay of {len(logged)} requests: {agreement:.1%} {same} (min "
                         f"{sh.min_agreement:.0%}), mean score shift {shift:.4f} (max {sh.max_mean_score_shift})"
                         + ("" if agree_ok else f"; {'accepted' if quality_ok else 'not offset'} by labeled quality"))]
    if quality_ok is not None:
        checks.append(SuiteCheck("quality", quality_ok, detail_q))
    else:
        checks.append(SuiteCheck("quality", True, detail_q))
    return _result("shadow", checks, metrics)


# all of them -------------------------------------------------------------------------------------------

def run_suites(challenger: Any, champion: Any | None, test: pd.DataFrame, params: Params, project_dir: Path,
               calibration: dict[str, float], champion_calibration: dict[str, float] | None,
               logged: pd.DataFrame | None, labels: pd.DataFrame | None,
               suites: list[str] | None = None) -> list[SuiteResult]:
    spec = params.evaluation
    contract = params.dataset
    wanted = suites if suites is not None else list(spec.suites)
    sample = test.sample(min(len(test), spec.behavioural.sample_rows), random_state=params.training.seed)
    results: list[SuiteResult] = []
    if "golden" in wanted:
        results.append(golden_suite(challenger, champion, read_golden(project_dir / spec.golden.path), contract, spec))
    if "behavioural" in wanted:
        results.append(behavioural_suite(challenger, sample, contract, spec))
    if "adversarial" in wanted:
        results.append(adversarial_suite(challenger, test, contract, spec))
    if "budgets" in wanted:
        results.append(budgets_suite(challenger, champion, test, contract, spec, calibration, champion_calibration))
    if "shadow" in wanted:
        import pandas as pd

        results.append(shadow_suite(challenger, logged if logged is not None else pd.DataFrame(), labels, contract, spec))
    return results
