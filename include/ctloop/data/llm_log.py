"""An LLM app's request log: one row per answer ``ctloop serve`` gave, under
``<lake>/llm_log/<app>/dt=YYYY-MM-DD/<writer>.parquet``: the prompt version and route that answered,
the decision and reply, whether the model's JSON was valid, tokens in and out, cost, latency in total and
per tool call, and the ticket's text (for text drift). A file is written aside and renamed into place.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

LLM_LOG_COLUMNS = [
    "request_id", "at", "ticket_id", "route", "prompt_version", "model", "decision_route", "escalate", "reply",
    "schema_valid", "refused", "llm_disagreed", "input_tokens", "output_tokens", "cost", "latency_ms",
    "tool_ms", "text", "text_length", "error",
]


def llm_log_dir(lake_root: Path, app: str) -> Path:
    return lake_root / "llm_log" / app


def write_llm_log(lake_root: Path, app: str, frame: pd.DataFrame, name: str) -> list[Path]:
    """One file per day of ``at`` (UTC); a re-run with the same name replaces its files."""
    import pandas as pd

    at = pd.to_datetime(frame["at"], utc=True)
    written = []
    for day, part in frame.groupby(at.dt.date, sort=True):
        target = llm_log_dir(lake_root, app) / f"dt={day.isoformat()}" / f"{name}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".parquet.tmp")
        part.reindex(columns=LLM_LOG_COLUMNS).to_parquet(tmp, index=False)
        tmp.replace(target)
        written.append(target)
    return written


def _read(files: list[Path]) -> pd.DataFrame:
    import pandas as pd

    frames = [pd.read_parquet(f, columns=LLM_LOG_COLUMNS) for f in files]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=LLM_LOG_COLUMNS)


def read_llm_log(lake_root: Path, app: str, day: date) -> pd.DataFrame:
    return _read(sorted((llm_log_dir(lake_root, app) / f"dt={day.isoformat()}").glob("*.parquet")))


def llm_log_since(lake_root: Path, app: str, since: datetime) -> pd.DataFrame:
    """The rows answered at or after ``since`` (UTC), from the files written since then."""
    import pandas as pd

    floor = since.timestamp()
    files = [f for f in sorted(llm_log_dir(lake_root, app).glob("dt=*/*.parquet")) if f.stat().st_mtime >= floor]
    frame = _read(files)
    if frame.empty:
        return frame
    return frame[pd.to_datetime(frame["at"], utc=True) >= pd.Timestamp(since)].reset_index(drop=True)
