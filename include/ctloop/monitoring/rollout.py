"""The evidence of one staged-rollout step, measured from the prediction log (and the labels that have
arrived): both routes over the same period, as a :class:`~ctloop.decisions.rollout.StepEvidence` for the
pure analysis.

* requests and p99 latency per route: the log's ``route`` (``champion``; ``canary`` is the candidate's
  share of request keys) and ``latency_ms``; errors are counted by the server, not logged, so the caller
  passes them (the server's ``/metrics``);
* score distance: Evidently's normed Wasserstein distance (``ValueDrift(method="wasserstein")``, the
  method the monitor uses on numeric columns) between the candidate's scores and the champion's;
* decision agreement: on requests the candidate also scored in shadow (``route == "shadow"``, the same
  ``request_id`` as the champion's row), the share with the same ``prediction``; none: not measured;
* quality drop: the champion's labeled quality minus the candidate's (worse: positive), each on its own
  labeled requests; none until both routes have ``min_labeled`` labels."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ctloop.core.task import worse_by
from ctloop.data.predictions import CANARY_ROUTE, CHAMPION_ROUTE, SHADOW_ROUTE
from ctloop.monitoring.records import RouteStats, StepEvidence
from ctloop.monitoring.reference import SCORE

if TYPE_CHECKING:
    import pandas as pd

CHAMPION, CANDIDATE, SHADOW = CHAMPION_ROUTE, CANARY_ROUTE, SHADOW_ROUTE  # the candidate answers on the canary route


def score_distance(champion: pd.Series, candidate: pd.Series) -> float | None:
    """Evidently's normed Wasserstein distance of the candidate's scores from the champion's (None: a side
    without scores, or champion scores without spread)."""
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import pandas as pd

    champion, candidate = champion.dropna().astype("float64"), candidate.dropna().astype("float64")
    if len(champion) < 2 or candidate.empty or champion.std() == 0:
        return None
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    definition = DataDefinition(numerical_columns=[SCORE])
    snapshot = Report([ValueDrift(column=SCORE, method="wasserstein")]).run(
        Dataset.from_pandas(pd.DataFrame({SCORE: candidate.to_numpy()}), data_definition=definition),
        Dataset.from_pandas(pd.DataFrame({SCORE: champion.to_numpy()}), data_definition=definition))
    return float(snapshot.dict()["metrics"][0]["value"])


def _route(log: pd.DataFrame, route: str, errors: Mapping[str, int]) -> RouteStats:
    rows = log[log["route"] == route]
    p99 = float(rows["latency_ms"].quantile(0.99)) if len(rows) and "latency_ms" in rows else None
    return RouteStats(len(rows) + errors.get(route, 0), errors.get(route, 0), p99)


def measure_step(log: pd.DataFrame, elapsed_seconds: float, *, errors: Mapping[str, int] | None = None,
                 labels: pd.DataFrame | None = None, quality_metric: str | None = None, task: str = "binary",
                 min_labeled: int = 50, guard_stopped: bool = False) -> StepEvidence:
    """The step's evidence from the log rows it served (``log``: already cut to the step's period)."""
    errors = errors or {}
    champion, candidate = log[log["route"] == CHAMPION], log[log["route"] == CANDIDATE]
    shadow = log[log["route"] == SHADOW]
    agreement = None
    if len(shadow):
        both = champion[["request_id", "prediction"]].merge(shadow[["request_id", "prediction"]], on="request_id",
                                                            suffixes=("_champion", "_candidate"))
        if len(both):
            agreement = float((both["prediction_champion"] == both["prediction_candidate"]).mean())
    drop, labeled = None, 0
    if labels is not None and quality_metric is not None and len(labels):
        from ctloop.monitoring.quality import quality_of

        joined = {name: rows.merge(labels[["request_id", "label"]], on="request_id")
                  for name, rows in ((CHAMPION, champion), (CANDIDATE, candidate))}
        labeled = len(joined[CANDIDATE])
        if min(len(j) for j in joined.values()) >= min_labeled:
            drop = worse_by(quality_metric, quality_of(quality_metric, joined[CHAMPION], task),
                            quality_of(quality_metric, joined[CANDIDATE], task))
    return StepEvidence(elapsed_seconds, _route(log, CHAMPION, errors), _route(log, CANDIDATE, errors),
                        score_distance(champion[SCORE], candidate[SCORE]) if SCORE in log else None,
                        agreement, drop, labeled, guard_stopped)
