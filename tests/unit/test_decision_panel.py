"""The decision panel a person reads above Evidently's report: validation warnings of the day's delivery
are shown, escaped whatever they contain (a warning quotes column names and values from the data)."""

from __future__ import annotations

import html
import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from ctloop.monitoring.report import decision_panel


def summary(warnings: list[str]) -> dict:
    return {"window": "2013-06-02", "rows": 10, "champion": "3", "drift_share": 0.0, "drifted_columns": [],
            "thresholds": "calibrated", "drift": {"columns": {}}, "missing": {}, "ingest_warnings": warnings,
            "decision": {"trigger": False, "status": "no_drift", "reasons": ["nothing drifted"]}}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=4))
def test_every_warning_is_listed_and_escaped(warnings: list[str]) -> None:
    panel = decision_panel(summary(warnings))
    section = panel[panel.index("Validation warnings"):panel.index("<h3>Missing values")]
    items = re.findall(r"<li>(.*?)</li>", section, flags=re.S)
    assert [html.unescape(i) for i in items] == warnings
    assert all("<" not in i for i in items)
    # the embedded summary carries them too, and the script block cannot be closed by the data
    embedded = panel[panel.index('id="ctloop-summary">') + len('id="ctloop-summary">'):panel.rindex("</script>")]
    assert json.loads(html.unescape(embedded))["ingest_warnings"] == warnings


def test_a_day_without_warnings_says_none() -> None:
    panel = decision_panel(summary([]))
    assert "<li>none</li>" in panel[panel.index("Validation warnings"):]
