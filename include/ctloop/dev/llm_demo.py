"""The LLM app's demo data: the customer table its lookup tool reads from the lake.

The golden tickets name customers ``c-001`` .. ``c-007``; the rest of the table is drawn from the
simulator's distributions (seeded), the way a team's CRM export would sit in its lake.
"""

from __future__ import annotations

from pathlib import Path

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
