"""Which logged rows the monitor judges: every served request for feature drift (whichever route answered),
the champion's own outputs for prediction drift (a staged rollout's candidate may answer most keys)."""

from __future__ import annotations

import math

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from ctloop.flows.monitor import served_sample

ROUTES = st.lists(st.sampled_from(["champion", "canary", "shadow"]), min_size=1, max_size=60)


def frame(routes: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"channel": [f"c{i % 3}" for i in range(len(routes))],
                         "score": [i / max(len(routes), 1) for i in range(len(routes))], "route": routes})


@given(ROUTES)
def test_features_from_every_served_row_outputs_from_the_champions(routes: list[str]) -> None:
    sample, outputs = served_sample(frame(routes), ["score"])
    served = [r for r in routes if r != "shadow"]
    assert len(sample) == len(served)  # shadow rows repeat requests: left out, nothing else is
    assert "route" not in sample.columns
    if "champion" not in served:  # the candidate answered every key: no champion output to judge
        assert outputs == [] and "score" not in sample.columns
        return
    assert outputs == ["score"]
    for route, score in zip(served, sample["score"], strict=True):
        assert math.isnan(score) == (route != "champion")


def test_a_window_the_candidate_served_entirely_keeps_its_features() -> None:
    sample, outputs = served_sample(frame(["canary"] * 5 + ["shadow"] * 2), ["score"])
    assert outputs == [] and list(sample["channel"]) == ["c0", "c1", "c2", "c0", "c1"]
