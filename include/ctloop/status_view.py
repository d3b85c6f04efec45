"""The table ``ctloop status`` prints (also shown at the end of the demo)."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def status_table(st: dict[str, Any]) -> Table:
    table = Table(title=f"registered model {st['model']}")
    for col in ("alias", "version", "roc_auc", "f1", "brier", "gate", "since", "why"):
        table.add_column(col)
    for alias in ("champion", "challenger", "previous"):
        v = st[alias]
        if v is None:
            table.add_row(alias, "-", "", "", "", "", "", "")
            continue
        m, t = v["metrics"], v["tags"]
        gate = {True: "passed", False: "REJECTED"}.get(v["gate"]["passed"], "-") if v["gate"] else "-"
        since = t.get("demoted_at") if alias == "previous" else t.get("promoted_at", v["created"])
        table.add_row(alias, v["version"], str(m.get("roc_auc", "")), str(m.get("f1_score", "")),
                      str(m.get("brier_score", "")), gate, since or v["created"],
                      t.get("promoted_reason", t.get("trigger_reason", "")))
    return table
