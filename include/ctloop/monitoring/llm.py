"""What an LLM app's request log says about one window: per prompt version, requests, tokens in and out,
cost, output-schema failures, refusals, errors, latency in total and per tool; and whether the tickets'
text drifted from a reference window, judged by Evidently on text descriptors (text length and the share of
words the reference never used, :mod:`ctloop.monitoring.text`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from ctloop.monitoring.drift import DriftPolicy, detect_drift
from ctloop.monitoring.records import VersionStats
from ctloop.monitoring.text import with_descriptors

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.core.params import DatasetSpec

MIN_TEXT_ROWS = 30  # fewer on either side: the text's drift is not judged


def version_stats(frame: pd.DataFrame) -> list[VersionStats]:
    stats = []
    for version, part in frame.groupby(frame["prompt_version"].astype(str), sort=True):
        answered = part[part["error"].isna()]
        n = len(part)
        tools: dict[str, list[float]] = {}
        for raw in answered["tool_ms"].dropna():
            for name, ms in json.loads(raw).items():
                tools.setdefault(name, []).append(float(ms))
        latency = answered["latency_ms"].dropna()
        tokens_in, tokens_out = int(answered["input_tokens"].fillna(0).sum()), int(answered["output_tokens"].fillna(0).sum())
        stats.append(VersionStats(
            str(version), n, tokens_in, tokens_out, float(answered["cost"].fillna(0).sum()),
            (tokens_in + tokens_out) / len(answered) if len(answered) else 0.0,
            float((answered["schema_valid"] != True).mean()) if len(answered) else 0.0,  # noqa: E712
            float((answered["refused"] == True).mean()) if len(answered) else 0.0,  # noqa: E712
            1 - len(answered) / n if n else 0.0,
            float(latency.quantile(0.95)) if len(latency) else None,
            {k: sum(v) / len(v) for k, v in sorted(tools.items())}))
    return stats


def text_drift(reference: pd.Series, current: pd.Series, threshold_share: float = 0.5) -> dict[str, Any] | None:
    """Evidently's drift tests on the tickets' text descriptors (None when a side is too small)."""
    import pandas as pd

    ref, cur = reference.dropna().astype(str), current.dropna().astype(str)
    if len(ref) < 2 * MIN_TEXT_ROWS or len(cur) < MIN_TEXT_ROWS:
        return None
    contract = cast("DatasetSpec", SimpleNamespace(text_features=["text"]))
    ref_d, cur_d, names = with_descriptors(pd.DataFrame({"text": ref.to_numpy()}),
                                           pd.DataFrame({"text": cur.to_numpy()}), contract)
    assert cur_d is not None
    result = detect_drift(ref_d, cur_d, names, [], DriftPolicy(drift_share=threshold_share))
    return {"drift": result.dataset_drift, "columns": {c: asdict(d) for c, d in result.columns.items()},
            "rows": {"reference": len(ref_d), "current": len(cur_d)}}
