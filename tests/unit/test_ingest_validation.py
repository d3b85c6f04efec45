"""Every kind of bad input from the foundation issue: rejected naming the column (or the file), the batch
quarantined with its validation result, raw left byte-identical, nothing curated. Real GX, committed suite."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctloop.core.params import get_params
from ctloop.core.settings import get_settings
from ctloop.data.simulator import SimulationSpec, simulate_day
from ctloop.data.store import Lake
from ctloop.flows.ingest import ingest_day
from ctloop.validation.context import open_context

DAY = date(2026, 1, 5)


@pytest.fixture
def files_source(use_params, tmp_path: Path):  # type: ignore[no-untyped-def]
    incoming = tmp_path / "incoming"
    use_params(source={"kind": "files", "path": str(incoming / "dt={ds}" / "*")})
    return incoming


def _deliver(incoming: Path, frame: pd.DataFrame | None, name: str = "batch.parquet", raw_bytes: bytes | None = None) -> Path:
    target = incoming / f"dt={DAY}" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if raw_bytes is not None:
        target.write_bytes(raw_bytes)
    elif name.endswith(".csv"):
        assert frame is not None
        frame.to_csv(target, index=False)
    else:
        assert frame is not None
        frame.to_parquet(target, index=False)
    return target


def _good() -> pd.DataFrame:
    return simulate_day(DAY, SimulationSpec(rows=1000))


def _ingest():  # type: ignore[no-untyped-def]
    settings = get_settings()
    lake = Lake(settings.lake_root)
    return ingest_day(DAY, get_params(), lake, open_context(settings)), lake


def test_good_batch_is_curated(files_source: Path) -> None:
    src = _deliver(files_source, _good())
    outcome, lake = _ingest()
    assert outcome.status == "curated" and outcome.rows == 1000
    assert len(lake.read_curated([DAY])) == 1000
    assert lake.raw_files(DAY)[0].read_bytes() == src.read_bytes()
    again, _ = _ingest()  # re-running a day rewrites the same partition: no duplicates
    assert again.status == "curated" and len(lake.read_curated([DAY])) == 1000 and len(lake.raw_files(DAY)) == 1


def _drop(col: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda f: f.drop(columns=[col])


def _set(col: str, fn: Callable[[pd.DataFrame], object]) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def apply(f: pd.DataFrame) -> pd.DataFrame:
        f = f.copy()
        f[col] = fn(f)
        return f
    return apply


def _set_rows(col: str, rows: slice, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def apply(f: pd.DataFrame) -> pd.DataFrame:
        f = f.copy()
        if isinstance(value, float) or value is None:
            f[col] = f[col].astype("float64") if f[col].dtype.kind in "iu" else f[col]
        f.loc[f.index[rows], col] = value
        return f
    return apply


CASES: list[tuple[str, Callable[[pd.DataFrame], pd.DataFrame], str]] = [
    ("missing column", _drop("prior_contacts_30d"), "prior_contacts_30d"),
    ("renamed column", lambda f: f.rename(columns={"sentiment": "sentiment_score"}), "sentiment"),
    ("unexpected extra column", _set("agent_notes", lambda f: "x"), "agent_notes"),
    ("numbers as strings", _set("message_length", lambda f: f["message_length"].astype(str)), "message_length"),
    ("nulls above the fail level", _set_rows("sentiment", slice(0, 200), None), "sentiment"),
    ("a unit bug: values 60x off", _set("first_response_minutes", lambda f: f["first_response_minutes"] * 60),
     "first_response_minutes"),
    ("a varied column turned constant", _set("product_area", lambda f: "billing"), "product_area"),
    ("text far longer than ever seen", _set_rows("language", slice(0, 1), "x" * 500), "language"),
    ("all-null column", _set("account_age_days", lambda f: np.nan), "account_age_days"),
    ("negative counts", _set_rows("prior_contacts_30d", slice(0, 5), -3), "prior_contacts_30d"),
    ("out-of-range values", _set_rows("sentiment", slice(0, 5), 7.5), "sentiment"),
    ("+inf", _set_rows("first_response_minutes", slice(0, 1), float("inf")), "first_response_minutes"),
    ("-inf", _set_rows("sentiment", slice(0, 1), float("-inf")), "sentiment"),
    ("target null", _set_rows("escalated", slice(0, 1), None), "escalated"),
    ("target third class", _set_rows("escalated", slice(0, 3), 2), "escalated"),
    ("flood of unseen categories", _set_rows("channel", slice(0, 300), "carrier_pigeon"), "channel"),
    ("duplicated ids", _set_rows("ticket_id", slice(0, 2), "T-dup"), "ticket_id"),
    ("timestamps outside the interval", _set_rows("created_at", slice(0, 3), pd.Timestamp("2026-01-09T10:00Z")), "created_at"),
]


@pytest.mark.parametrize(("case", "mutate", "column"), CASES, ids=[c[0] for c in CASES])
def test_bad_batch_is_quarantined_naming_the_column(files_source: Path, case: str, mutate, column: str) -> None:  # type: ignore[no-untyped-def]
    src = _deliver(files_source, mutate(_good()))
    delivered = src.read_bytes()
    outcome, lake = _ingest()
    assert outcome.status == "quarantined", case
    assert not lake.partition("curated", DAY).exists()
    [raw] = lake.raw_files(DAY)
    assert raw.read_bytes() == delivered == src.read_bytes(), "raw and the delivered file stay byte-identical"
    [result_file] = lake.partition("quarantine", DAY).glob("*/validation.json")
    result = json.loads(result_file.read_text())
    assert (result_file.parent / raw.name).read_bytes() == delivered
    named = {f.get("column") for f in result["failed_expectations"]} | {
        c for f in result["failed_expectations"] if isinstance(f.get("observed"), dict)
        for cols in f["observed"].values() for c in cols}
    assert column in named, (case, result["failed_expectations"])


def test_warn_levels_pass_with_warnings_recorded_and_named_by_row_id(files_source: Path) -> None:
    """Nulls, unseen categories and a range beyond what the reference showed, each between the warn and the
    fail level: the batch is curated, every warning is recorded (validation result, curated manifest,
    audit) and names the failing rows by their ids."""
    from ctloop.core.audit import audit_log

    frame = _good()
    frame = _set_rows("sentiment", slice(0, 50), None)(frame)  # 5% nulls: warn above 2%, fail above 10%
    frame = _set_rows("channel", slice(100, 150), "carrier_pigeon")(frame)  # 5% unseen
    suite = json.loads((get_settings().gx_dir / "expectations" / "support_escalation_batch.json").read_text())
    [warn_max] = [e["kwargs"]["max_value"] for e in suite["expectations"] if e["severity"] == "warning"
                  and e["kwargs"].get("column") == "message_length" and "max_value" in e["kwargs"]]
    frame = _set_rows("message_length", slice(200, 230), float(warn_max) * 1.5)(frame)  # past warn, short of fail
    _deliver(files_source, frame)
    outcome, lake = _ingest()
    assert outcome.status == "curated" and outcome.rows == 1000
    assert {w.split(" on ")[1] for w in outcome.warnings} == {"sentiment", "channel", "message_length"}
    manifest = json.loads((lake.partition("curated", DAY) / "_manifest.json").read_text())
    assert manifest["warnings"] == outcome.warnings
    [entry] = [e for e in audit_log(get_settings()).entries() if e["kind"] == "validation"]
    assert entry["outcome"] == "passed with warnings" and len(entry["reasons"]) == 3
    assert all(r.startswith("warning: ") for r in entry["reasons"])
    from ctloop.validation.run import validate_frame

    report = validate_frame(frame, get_params(), open_context(get_settings()))
    channel = next(w for w in report.warnings if w.column == "channel")
    ids = set(frame.loc[frame.index[100:150], "ticket_id"])
    assert channel.example_ids and set(channel.example_ids) <= ids, "example_ids are the rows' ids"
    assert set(channel.examples) == {"carrier_pigeon"} and channel.unexpected_count == 50


def test_on_warning_quarantine_keeps_the_strict_behaviour(files_source: Path, use_params) -> None:  # type: ignore[no-untyped-def]
    use_params(source={"kind": "files", "path": str(files_source / "dt={ds}" / "*")},
               validation={"on_warning": "quarantine"})
    _deliver(files_source, _set_rows("sentiment", slice(0, 50), None)(_good()))
    outcome, _ = _ingest()
    assert outcome.status == "quarantined" and outcome.rows == 1000
    assert any("sentiment" in r for r in outcome.reasons)


def test_empty_batch(files_source: Path) -> None:
    _deliver(files_source, _good().iloc[0:0])
    outcome, lake = _ingest()
    assert outcome.status == "quarantined"
    result = json.loads(next(lake.partition("quarantine", DAY).glob("*/validation.json")).read_text())
    assert any(f["expectation"] == "expect_table_row_count_to_be_between" and f["observed"] == 0
               for f in result["failed_expectations"])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [("batch.parquet", b"PAR1 this is not really parquet", "unreadable parquet file"),
     ("batch.parquet", None, "named .parquet but holds CSV text")],
)
def test_unreadable_file_is_quarantined_naming_the_file(files_source: Path, name: str, content: bytes | None, message: str) -> None:
    if content is None:
        csv = files_source / "tmp.csv"
        csv.parent.mkdir(parents=True, exist_ok=True)
        _good().to_csv(csv, index=False)
        content = csv.read_bytes()
    src = _deliver(files_source, None, name=name, raw_bytes=content)
    outcome, lake = _ingest()
    assert outcome.status == "quarantined" and message in outcome.reasons[0]
    [raw] = lake.raw_files(DAY)
    assert raw.name in outcome.reasons[0] or "batch-" in outcome.reasons[0]
    assert raw.read_bytes() == content == src.read_bytes()


def test_csv_delivery_is_accepted(files_source: Path) -> None:
    _deliver(files_source, _good(), name="batch.csv")
    outcome, _ = _ingest()
    assert outcome.status == "curated", outcome.reasons


def test_missing_delivery_names_the_pattern(files_source: Path) -> None:
    from ctloop.core.errors import DataUnreadable

    with pytest.raises(DataUnreadable, match=f"no file delivered for {DAY}"):
        _ingest()


def test_a_failed_redelivery_withdraws_the_days_curated_data(files_source: Path) -> None:
    _deliver(files_source, _good())
    assert _ingest()[0].status == "curated"
    (files_source / f"dt={DAY}" / "batch.parquet").unlink()
    _deliver(files_source, _drop("channel")(_good()))
    outcome, lake = _ingest()
    assert outcome.status == "quarantined" and not lake.partition("curated", DAY).exists()
    assert len(lake.raw_files(DAY)) == 2, "both deliveries stay in raw"


def test_validation_view_keeps_values_and_lets_wrong_types_through_to_gx() -> None:
    import pandas as pd

    from ctloop.validation.run import validation_view

    frame = pd.DataFrame({"text": ["a", None, "c"], "mixed": ["a", 2, "c"],
                          "ts": pd.to_datetime(["2026-01-01T01:00:00+01:00"] * 3, utc=True), "n": [1.0, 2.0, 3.0]})
    for i in range(5):  # built column by column: one block per column
        frame[f"x{i}"] = [1.0, 2.0, 3.0]
    view = validation_view(frame)
    assert str(view["text"].dtype) == "string" and view["text"].isna().tolist() == [False, True, False]
    assert view["mixed"].dtype == object, "a column holding anything but text stays object for GX's per-value check"
    assert str(view["ts"].dtype) == "datetime64[ns]" and view["ts"].iloc[0] == pd.Timestamp("2026-01-01T00:00:00")
    assert view._mgr.nblocks <= view.dtypes.astype(str).nunique(), "one block per dtype"
    assert frame["text"].dtype == object and frame["ts"].dt.tz is not None, "the caller's frame is untouched"


def test_copy_on_write_changes_no_verdict(ctloop_home: Path) -> None:
    """The suite runs under pandas' Copy-on-Write mode for speed: each expectation's verdict is the one GX
    gives in pandas' default mode, on a batch with nulls and several kinds of failure."""
    from ctloop.flows.ingest import interval_of
    from ctloop.validation.run import _naive_utc, copy_on_write, validation_view
    from ctloop.validation.suite import INTERVAL_END, INTERVAL_START

    params = get_params()
    context = open_context(get_settings())
    definition = context.validation_definitions.get(params.validation.suite)
    frame = _good()
    for mutate in (_set_rows("sentiment", slice(0, 100), None), _set_rows("prior_contacts_30d", slice(0, 5), -3),
                   _set_rows("channel", slice(0, 300), "carrier_pigeon")):
        frame = mutate(frame)
    before = frame.copy()
    lo, hi = interval_of(DAY)
    p = {INTERVAL_START: _naive_utc(lo), INTERVAL_END: _naive_utc(hi)}

    def verdicts(result) -> list:  # type: ignore[no-untyped-def]
        return sorted((r.expectation_config.type, str(r.expectation_config.kwargs.get("column")), r.success)
                      for r in result.results)

    view = validation_view(frame)
    default = verdicts(definition.run(batch_parameters={"dataframe": view}, expectation_parameters=p,
                                      result_format="BOOLEAN_ONLY"))
    with copy_on_write():
        cow = verdicts(definition.run(batch_parameters={"dataframe": view}, expectation_parameters=p,
                                      result_format="BOOLEAN_ONLY"))
    assert cow == default and len(cow) > 20
    assert {column for _, column, ok in cow if not ok} == {"sentiment", "prior_contacts_30d", "channel"}
    pd.testing.assert_frame_equal(frame, before)
