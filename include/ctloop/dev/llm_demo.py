"""The LLM app's demo data: the customer table its lookup tool reads from the lake.

The golden tickets name customers ``c-001`` .. ``c-007``; the rest of the table is drawn from the
simulator's distributions (seeded), the way a team's CRM export would sit in its lake.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctloop.data.simulator import TIERS

# the golden set's customers: who they are matters to the escalation model (tier, history)
GOLDEN_CUSTOMERS = {
    "c-001": ("enterprise", 1900, 5), "c-002": ("free", 40, 0), "c-003": ("pro", 700, 3),
    "c-004": ("free", 120, 0), "c-005": ("pro", 365, 1), "c-006": ("pro", 900, 2), "c-007": ("enterprise", 2500, 1),
}


def customer_table(n: int = 500, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [{"customer_id": cid, "customer_tier": t, "account_age_days": age, "prior_contacts_30d": prior}
            for cid, (t, age, prior) in GOLDEN_CUSTOMERS.items()]
    for i in range(len(rows) + 1, n + 1):
        rows.append({"customer_id": f"c-{i:03d}", "customer_tier": str(rng.choice(TIERS, p=[0.6, 0.3, 0.1])),
                     "account_age_days": int(rng.gamma(2.0, 300)), "prior_contacts_30d": int(rng.poisson(0.8))})
    return pd.DataFrame(rows)


def write_customers(path: Path, n: int = 500) -> Path:
    """Write the table once (raw data is never rewritten: an existing table is kept)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        customer_table(n).to_parquet(path, index=False)
    return path


def simulated_tickets(day: date, n: int, seed: int = 7) -> list[dict[str, Any]]:
    """A day of the simulator's tickets as the triage app receives them: the subject as the text, the
    support system's own fields as features, and a customer from the table."""
    from ctloop.data.simulator import SimulationSpec, simulate_day

    frame = simulate_day(day, SimulationSpec(rows=n, seed=seed, text=True)).head(n)
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 501, size=len(frame))
    keep = ["channel", "product_area", "language", "sentiment", "first_response_minutes", "hour_of_day"]
    return [{"ticket_id": str(r["ticket_id"]), "text": str(r["subject"]), "customer_id": f"c-{int(i):03d}",
             "features": {k: (r[k].item() if hasattr(r[k], "item") else r[k]) for k in keep}}
            for r, i in zip(frame.to_dict("records"), ids, strict=True)]
