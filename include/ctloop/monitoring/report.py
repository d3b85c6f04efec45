"""One truth per window: the Evidently report a person opens shows, above Evidently's own panels, the
decision ctloop took and why (the same figures as ``summary.json`` and the MLflow run, embedded as JSON
too): the status and trigger, every reason, the threshold in force per column and whether it was
calibrated, the features and the model's output apart, and the null shares Evidently does not test."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctloop.monitoring.records import WindowSummary

MARK = "<!-- ctloop decision -->"


def _row(cells: list[Any], tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in cells) + "</tr>"


def decision_panel(summary: dict[str, Any], outputs: tuple[str, ...] = ("score",)) -> str:
    d = summary["decision"]
    columns = (summary.get("drift") or {}).get("columns", {})
    features = {c: v for c, v in columns.items() if c not in outputs}
    verdict = "DRIFT: retrain triggered" if d["trigger"] else d["status"].replace("_", " ")
    share = summary.get("drift_share")
    rows = "".join(_row([c, v["method"], f"{v['score']:.4f}", f"{v['threshold']:.4f}", "yes" if v["drift"] else "no"])
                   for c, v in sorted(features.items()))
    out_rows = "".join(_row([c, v["method"], f"{v['score']:.4f}", f"{v['threshold']:.4f}", "yes" if v["drift"] else "no"])
                       for c, v in columns.items() if c in outputs)
    missing = "".join(_row([c, f"{m['reference']:.1%}", f"{m['current']:.1%}", "yes" if m["drift"] else "no"])
                      for c, m in sorted((summary.get("missing") or {}).items()))
    head = ["column", "method", "score", "threshold", "drift"]
    return f"""{MARK}
<section id="ctloop-decision" style="font-family:sans-serif;border:2px solid #333;margin:12px;padding:12px">
<h2>ctloop's decision for window {html.escape(summary['window'])}: {html.escape(verdict)}</h2>
<p>{summary['rows']} logged rows; champion v{html.escape(str(summary['champion']))}; feature drift share
{'-' if share is None else f'{share:.0%}'} ({len(summary.get('drifted_columns') or [])} of {len(features)} features; the
model's output is judged apart and not counted in it); thresholds: {html.escape(str(summary.get('thresholds')))}.</p>
<ul>{''.join(f'<li>{html.escape(r)}</li>' for r in d['reasons'])}</ul>
<h3>Features</h3><table border="1" cellpadding="3">{_row(head, 'th')}{rows}</table>
<h3>The model's output</h3><table border="1" cellpadding="3">{_row(head, 'th')}{out_rows}</table>
<h3>Validation warnings of the day's delivery</h3>
<ul>{''.join(f'<li>{html.escape(w)}</li>' for w in summary.get('ingest_warnings') or []) or '<li>none</li>'}</ul>
<h3>Missing values (not tested by Evidently, which drops nulls)</h3>
<table border="1" cellpadding="3">{_row(['column', 'reference', 'window', 'drift'], 'th')}{missing}</table>
<p>Evidently's panels below compute the same scores; its dataset verdict counts the features only, with
the same thresholds and the same share.</p>
<script type="application/json" id="ctloop-summary">{html.escape(json.dumps(summary, default=str))}</script>
</section>
"""


def annotate_report(report: Path, summary: WindowSummary) -> None:
    """Put the decision panel at the top of the report's body (once: a re-run replaces it)."""
    text = report.read_text(encoding="utf-8")
    if MARK in text:
        start = text.index(MARK)
        end = text.index("</section>", start) + len("</section>\n")
        text = text[:start] + text[end:]
    panel = decision_panel(summary.to_dict())
    at = text.find("<body")
    at = text.find(">", at) + 1 if at != -1 else 0
    report.write_text(text[:at] + panel + text[at:], encoding="utf-8")
