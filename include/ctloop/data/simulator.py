"""Deterministic simulator of a customer-support escalation model's data (will this ticket need a human?).

Every day is generated from its own seeded random stream, so a day's bytes depend only on
(date, scenario, drift start, magnitude, rows, seed). Before ``drift_start`` every scenario produces
exactly the ``stable`` data; from it on, a scenario changes only what its name says:

- ``seasonal``: weekday/weekend volume and hour-of-day profile (a known cycle, not drift)
- ``covariate_shift``: product-area mix moves towards shipping/returns and messages get longer
- ``concept_shift``: the escalation rule changes; inputs are untouched
- ``label_shift``: the base escalation rate moves; inputs are untouched
- ``upstream_bug``: ``first_response_minutes`` arrives in seconds
- ``new_category``: an unseen language (``zh``) appears
- ``schema_break``: ``sentiment`` is renamed ``sentiment_score``
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

CHANNELS = ("chat", "email", "phone", "social")
PRODUCT_AREAS = ("billing", "technical", "account", "shipping", "returns")
TIERS = ("free", "pro", "enterprise")
LANGUAGES = ("en", "es", "de", "fr", "pt", "ja")
SCENARIOS = (
    "stable", "seasonal", "covariate_shift", "concept_shift", "label_shift",
    "upstream_bug", "new_category", "schema_break", "text_shift",
)
# the ticket's subject (SimulationSpec.text): words of its product area, and words that come with the anger
# and the repeat contacts that drive escalation, so the text carries signal a model can learn
_AREA_WORDS = {
    "billing": ("invoice", "charged", "refund", "payment", "price"),
    "technical": ("error", "crash", "login", "slow", "bug"),
    "account": ("password", "access", "profile", "email", "locked"),
    "shipping": ("delivery", "package", "tracking", "late", "address"),
    "returns": ("return", "exchange", "label", "damaged", "wrong"),
}
_ANGRY_WORDS = ("urgent", "unacceptable", "still", "again", "worst", "cancel")
_CALM_WORDS = ("question", "please", "help", "thanks", "how")
# text_shift: a new product launched in another script; its tickets read nothing like the old ones
_SHIFTED_WORDS = ("新产品", "无法", "激活", "订阅", "设备", "错误", "退款")

_CHANNEL_P = np.array([0.45, 0.30, 0.15, 0.10])
_AREA_P = np.array([0.25, 0.30, 0.20, 0.15, 0.10])
_AREA_P_SHIFTED = np.array([0.10, 0.15, 0.10, 0.35, 0.30])
_TIER_P = np.array([0.55, 0.35, 0.10])
_LANG_P = np.array([0.50, 0.15, 0.12, 0.10, 0.08, 0.05])
# hours 0..23: a business-day profile
_HOUR_W = np.array([1, 1, 1, 1, 1, 2, 3, 5, 8, 10, 10, 9, 8, 9, 10, 10, 9, 7, 5, 4, 3, 2, 2, 1], dtype=float)
_HOUR_W_WEEKEND = np.array([2, 1, 1, 1, 1, 1, 2, 3, 4, 6, 7, 8, 8, 8, 7, 7, 6, 6, 6, 5, 5, 4, 3, 3], dtype=float)


@dataclass(frozen=True)
class SimulationSpec:
    scenario: str = "stable"
    drift_start: date | None = None
    magnitude: float = 1.0
    rows: int = 2000
    seed: int = 7
    text: bool = False  # add the free-text `subject` column

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; expected one of {', '.join(SCENARIOS)}")
        if self.rows <= 0:
            raise ValueError(f"rows must be positive, got {self.rows}")


def _stream(seed: int, day: date, purpose: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{day.isoformat()}:{purpose}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


_SIGNAL = 2.0  # strength of the rule against the label noise


def _escalation_logit(f: dict[str, np.ndarray], concept: float) -> np.ndarray:
    """The noisy rule a model can learn (ROC AUC about 0.85). ``concept`` in [0, 1] blends in a new rule."""
    area = f["product_area"]
    tier = f["customer_tier"]
    channel = f["channel"]
    old = -2.8 + _SIGNAL * (
        - 1.5 * f["sentiment"]
        + 0.30 * np.minimum(f["prior_contacts_30d"], 8)
        + 0.35 * (area == "billing") + 0.55 * (area == "technical") - 0.3 * (area == "account")
        + 0.55 * (tier == "enterprise") + 0.2 * (tier == "pro")
        + 0.45 * (channel == "phone") + 0.6 * (channel == "social") - 0.2 * (channel == "email")
        + 0.008 * (np.minimum(f["first_response_minutes"], 600) - 60) / 6
        + 0.25 * np.log1p(f["message_length"] / 400)
        - 0.15 * np.log1p(f["account_age_days"] / 365)
    )
    if concept == 0:
        return old
    # After the concept change, shipping/returns tickets from long-standing customers escalate
    # and sentiment matters far less: the same inputs now mean something else.
    new = -2.8 + _SIGNAL * (
        - 0.3 * f["sentiment"]
        + 0.30 * np.minimum(f["prior_contacts_30d"], 8)
        + 1.2 * ((area == "shipping") | (area == "returns")) - 0.4 * (area == "technical")
        + 0.55 * (tier == "enterprise") + 0.2 * (tier == "pro")
        + 0.45 * (channel == "phone") + 0.6 * (channel == "social") - 0.2 * (channel == "email")
        + 0.35 * np.log1p(f["account_age_days"] / 365)
    )
    return (1 - concept) * old + concept * new


def _subjects(day: date, spec: SimulationSpec, frame: pd.DataFrame, shifted: float) -> list[str]:
    """A short subject per ticket, drawn after every other column (the other columns stay as they were)."""
    rng = _stream(spec.seed, day, "subject")
    out = []
    for area, sentiment, prior in zip(frame["product_area"], frame["sentiment"], frame["prior_contacts_30d"],
                                      strict=True):
        if rng.random() < 0.8 * shifted:
            out.append(" ".join(rng.choice(_SHIFTED_WORDS, size=int(rng.integers(2, 5)))))
            continue
        words = list(rng.choice(_AREA_WORDS[area], size=int(rng.integers(1, 3))))
        angry = sentiment < -0.3 or prior >= 3
        words += list(rng.choice(_ANGRY_WORDS if angry else _CALM_WORDS, size=int(rng.integers(1, 3))))
        rng.shuffle(words)
        out.append(" ".join(words).capitalize())
    return out


def simulate_day(day: date, spec: SimulationSpec) -> pd.DataFrame:
    """One day's labeled batch, as the upstream system would deliver it."""
    import pandas as pd

    active = spec.drift_start is not None and day >= spec.drift_start
    scenario = spec.scenario if active else "stable"
    # "seasonal" is a cycle, present from the start when it is the scenario
    if spec.scenario == "seasonal":
        scenario = "seasonal"
    m = spec.magnitude
    weekend = day.weekday() >= 5

    n = spec.rows
    if scenario == "seasonal":
        n = max(1, round(spec.rows * (0.6 if weekend else 1.1)))

    rng = _stream(spec.seed, day, "features")
    # draws happen in a fixed order so every column is the same across scenarios unless changed below
    hour_w = _HOUR_W_WEEKEND if (scenario == "seasonal" and weekend) else _HOUR_W
    hours = rng.choice(24, size=n, p=hour_w / hour_w.sum())
    seconds = rng.integers(0, 3600, size=n)
    channel = rng.choice(CHANNELS, size=n, p=_CHANNEL_P)
    area_u = rng.random(n)
    tier = rng.choice(TIERS, size=n, p=_TIER_P)
    language = rng.choice(LANGUAGES, size=n, p=_LANG_P)
    length_z = rng.normal(0, 1, size=n)
    sentiment = np.clip(rng.normal(0.05, 0.45, size=n), -1, 1)
    prior = rng.poisson(1.2, size=n)
    age = rng.gamma(2.0, 300.0, size=n).astype(int)
    first_resp = rng.gamma(2.0, 45.0, size=n)
    label_u = rng.random(n)
    new_lang_u = rng.random(n)

    area_p = _AREA_P
    if scenario == "covariate_shift":
        area_p = (1 - min(m, 1.0)) * _AREA_P + min(m, 1.0) * _AREA_P_SHIFTED
    area = np.asarray(PRODUCT_AREAS)[np.searchsorted(np.cumsum(area_p), area_u, side="right").clip(0, 4)]
    length_mu = 5.6 + (0.6 * m if scenario == "covariate_shift" else 0.0)
    message_length = np.exp(length_mu + 0.7 * length_z).astype(int) + 1
    if scenario == "new_category":
        language = np.where(new_lang_u < 0.25 * min(m, 4.0), "zh", language)

    features = {
        "channel": channel, "product_area": area, "customer_tier": tier,
        "sentiment": sentiment, "prior_contacts_30d": prior, "account_age_days": age,
        "first_response_minutes": first_resp, "message_length": message_length,
    }
    logit = _escalation_logit(features, concept=min(m, 1.0) if scenario == "concept_shift" else 0.0)
    if scenario == "label_shift":
        logit = logit + 1.0 * m
    escalated = (label_u < 1 / (1 + np.exp(-logit))).astype("int64")

    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    offsets = hours.astype("int64") * 3600 + seconds
    order = np.argsort(offsets, kind="stable")
    created = pd.to_datetime(start) + pd.to_timedelta(offsets[order], unit="s")

    frame = pd.DataFrame(
        {
            "ticket_id": [f"T{day:%Y%m%d}-{i:06d}" for i in range(n)],
            "created_at": created,
            "channel": channel[order],
            "product_area": area[order],
            "customer_tier": tier[order],
            "language": language[order],
            "message_length": message_length[order].astype("int64"),
            "sentiment": sentiment[order].round(4),
            "prior_contacts_30d": prior[order].astype("int64"),
            "account_age_days": age[order].astype("int64"),
            "first_response_minutes": first_resp[order].round(2),
            "hour_of_day": hours[order].astype("int64"),
            "escalated": escalated[order],
        }
    )
    if spec.text:
        frame.insert(frame.columns.get_loc("escalated"), "subject",
                     _subjects(day, spec, frame, min(m, 1.0) if scenario == "text_shift" else 0.0))
    if scenario == "upstream_bug":
        frame["first_response_minutes"] = (frame["first_response_minutes"] * 60).round(2)
    if scenario == "schema_break":
        frame = frame.rename(columns={"sentiment": "sentiment_score"})
    return frame
