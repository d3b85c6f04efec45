"""The golden set: reviewed cases with the expected decision, committed as JSON lines (one case per line,
so a review diff shows exactly what was added). Seeded once from reference data; production failures are
appended with ``ctloop golden add --from-log`` and never regenerated."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.core.errors import DataUnreadable, SchemaError

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.core.params import DatasetSpec
    from ctloop.data.store import Lake


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def case_from_row(row: pd.Series, contract: DatasetSpec, expected: float, case_id: str, note: str, source: str,
                  ) -> dict[str, Any]:
    value = int(expected) if contract.is_classifier else round(float(expected), 6)  # a class, or a value
    return {"case_id": case_id, "expected": value, "note": note, "source": source,
            "features": {c: _jsonable(row[c]) for c in contract.features}}


def np_linspace_index(n: int, k: int) -> list[int]:
    """``k`` positions spread evenly over ``n`` rows (all of them when ``n <= k``)."""
    return list(range(n)) if n <= k else [round(i * (n - 1) / (k - 1)) for i in range(k)] if k > 1 else [0]


def seed_cases(reference: pd.DataFrame, scores: Any, contract: DatasetSpec, per_class: int, source: str,
               confident: tuple[float, float] = (0.1, 0.8), tolerance: float = 0.0) -> list[dict[str, Any]]:
    """Cases the reference model is confident about and right on: clear escalations and clear
    non-escalations a good model must keep getting right."""
    frame = reference.assign(_score=scores)
    target = contract.target
    if contract.task == "multiclass":  # per class: rows of that class whose probability the model puts high
        cases = []
        for j, label in enumerate(contract.classes):
            sure = [i for i, (s, y) in enumerate(zip(scores, frame[target], strict=True))
                    if s is not None and y == label and s[j] >= confident[1]][:per_class]
            cases += [case_from_row(frame.iloc[i], contract, label, f"ref-{frame.iloc[i][contract.id]}",
                                    f"clear class {label} in reference data", source) for i in sure]
        return cases
    if not contract.is_classifier:  # regression: rows the model predicts within `tolerance`, spread over the range
        right = frame[(frame["_score"] - frame[target]).abs() <= tolerance].sort_values(target)
        picked = right.iloc[np_linspace_index(len(right), per_class)] if len(right) else right
        return [case_from_row(row, contract, row[target], f"ref-{row[contract.id]}",
                              f"predicted within {tolerance:g} of the truth in reference data", source)
                for _, row in picked.iterrows()]
    positives = frame[(frame[target] == 1) & (frame["_score"] >= confident[1])].head(per_class)
    negatives = frame[(frame[target] == 0) & (frame["_score"] <= confident[0])].head(per_class)
    cases = []
    for part, label in ((positives, 1), (negatives, 0)):
        for _, row in part.iterrows():
            cases.append(case_from_row(row, contract, label, f"ref-{row[contract.id]}",
                                       f"clear {'escalation' if label else 'non-escalation'} in reference data",
                                       source))
    return cases


def add_from_log(lake: Lake, contract: DatasetSpec, request_ids: list[str], label: float, note: str,
                 days: list[date]) -> list[dict[str, Any]]:
    """Cases for logged production requests (a real failure fed back into the suite)."""
    import pandas as pd

    from ctloop.data.predictions import prediction_files

    files = [f for d in days for f in prediction_files(lake, d)]
    if not files:
        raise DataUnreadable(f"{lake.root / 'predictions'}: no prediction log to take requests from")
    wanted = set(request_ids)
    frames = [pd.read_parquet(f, filters=[("request_id", "in", sorted(wanted))]) for f in files]
    found = pd.concat(frames, ignore_index=True).drop_duplicates("request_id")
    missing = wanted - set(found["request_id"].astype(str))
    if missing:
        raise SchemaError(f"request_id {', '.join(sorted(missing))}: not in the prediction log "
                          f"({lake.root / 'predictions'})")
    return [case_from_row(row, contract, label, f"prod-{row['request_id']}", note,
                          f"production request {row['request_id']} (model v{row['model_version']}, scored "
                          f"{float(row['score']):.3f})") for _, row in found.iterrows()]


def append_cases(path: Path, cases: list[dict[str, Any]]) -> int:
    """Append, refusing a case id that is already there (the file is reviewed; nothing is rewritten)."""
    existing = set()
    if path.exists():
        existing = {json.loads(line)["case_id"] for line in path.read_text().splitlines() if line.strip()}
    duplicate = [c["case_id"] for c in cases if c["case_id"] in existing]
    if duplicate:
        raise SchemaError(f"{path}: case_id {', '.join(duplicate)} already in the golden set")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        for case in cases:
            fh.write(json.dumps(case, sort_keys=True) + "\n")
    return len(cases)
