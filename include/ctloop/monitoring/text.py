"""Drift on free text (``type: text``), judged the way Evidently judges text: on descriptors computed per row.

Two descriptors per text column, added to both sides as numerical columns before the drift tests (so they
show in the report beside the features): Evidently's ``TextLength`` and the share of a row's words that the
reference never used (``CustomColumnDescriptor``; the vocabulary is the reference sample's own, so no
dictionary is downloaded, and words of any script count: ``\\w+`` is Unicode). A new product in another
language, a template change or an upstream bug truncating the text moves one of them while the words'
identities would be one category per row.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.core.params import DatasetSpec

WORD = re.compile(r"\w+", re.UNICODE)
MAX_VOCABULARY = 50_000  # the reference's most frequent words kept per column


def descriptor_names(column: str) -> tuple[str, str]:
    return f"{column}: text length", f"{column}: out-of-vocabulary share"


def vocabulary(texts: pd.Series) -> frozenset[str]:
    """The reference's words (lowercased), its ``MAX_VOCABULARY`` most frequent ones."""
    from collections import Counter

    counts = Counter(w for t in texts.dropna().astype(str) for w in WORD.findall(t.lower()))
    return frozenset(w for w, _ in counts.most_common(MAX_VOCABULARY))


def _oov_share(known: frozenset[str]) -> Any:
    def share(value: object) -> float:
        words = WORD.findall(value.lower()) if isinstance(value, str) else []
        return sum(w not in known for w in words) / len(words) if words else 0.0

    return share


def describe(frame: pd.DataFrame, contract: DatasetSpec, vocabularies: dict[str, frozenset[str]]) -> pd.DataFrame:
    """``frame`` with the text columns replaced by their descriptors (Evidently computes them)."""
    import os

    os.environ.setdefault("DO_NOT_TRACK", "true")
    from evidently import DataDefinition, Dataset
    from evidently.core.datasets import DatasetColumn
    from evidently.descriptors import CustomColumnDescriptor, TextLength

    columns = contract.text_features
    if not columns:
        return frame
    descriptors = []
    for c in columns:
        length, oov = descriptor_names(c)
        share = _oov_share(vocabularies[c])
        descriptors += [TextLength(c, alias=length),
                        CustomColumnDescriptor(c, lambda col, share=share: DatasetColumn(type="num", data=col.data.map(share)),
                                               alias=oov)]
    texts = frame[columns].astype(object).where(frame[columns].notna(), None)
    described = Dataset.from_pandas(texts, data_definition=DataDefinition(text_columns=columns),
                                    descriptors=descriptors).as_dataframe()
    names = [n for c in columns for n in descriptor_names(c)]
    return frame.drop(columns=columns).assign(**{n: described[n].astype("float64").to_numpy() for n in names})


def with_descriptors(reference: pd.DataFrame, current: pd.DataFrame | None, contract: DatasetSpec
                     ) -> tuple[pd.DataFrame, pd.DataFrame | None, list[str]]:
    """Both sides with their text columns as descriptors, and the descriptors' names (numerical columns).

    The vocabulary comes from every other reference row and the reference side is the rows in between: the
    reference then shows the share of unseen words that new text of the same kind has (rare words, typos),
    not a constant 0 that any new word would drift from."""
    if not contract.text_features:
        return reference, current, []
    learned, reference = reference.iloc[0::2], reference.iloc[1::2].reset_index(drop=True)
    vocabularies = {c: vocabulary(learned[c]) for c in contract.text_features}
    names = [n for c in contract.text_features for n in descriptor_names(c)]
    return (describe(reference, contract, vocabularies),
            None if current is None else describe(current, contract, vocabularies), names)
