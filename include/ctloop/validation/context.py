"""The Great Expectations file context in ``great_expectations/``.

Suites, the pandas datasource and the validation definitions are committed there; validation results
and Data Docs go to ``CTLOOP_HOME`` through GX's own ``${VAR}`` substitution in ``great_expectations.yml``,
so runs never dirty the repository.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from great_expectations.data_context import FileDataContext
    from great_expectations.datasource.fluent import PandasDatasource

    from ctloop.core.settings import Settings

DATASOURCE = "ctloop_pandas"
ASSET = "batch"
BATCH_DEFINITION = "whole_batch"


def gx_environment(settings: Settings) -> dict[str, str]:
    return {
        "GX_ANALYTICS_ENABLED": "false",
        "CTLOOP_GX_RESULTS_DIR": str(settings.home / "gx" / "validations"),
        "CTLOOP_DATA_DOCS_DIR": str(settings.data_docs_dir),
    }


def open_context(settings: Settings) -> FileDataContext:
    # GX reads these through ${VAR} substitution in great_expectations.yml
    os.environ.update(gx_environment(settings))
    import great_expectations as gx

    return gx.get_context(mode="file", context_root_dir=str(settings.gx_dir))


def ensure_batch_definition(context: FileDataContext) -> Any:
    """The dataframe batch definition every suite validates through (created once, then committed)."""
    try:
        source = context.data_sources.get(DATASOURCE)
    except KeyError:
        source = context.data_sources.add_pandas(DATASOURCE)
    source = cast("PandasDatasource", source)
    try:
        asset = source.get_asset(ASSET)
    except LookupError:
        asset = source.add_dataframe_asset(ASSET)
    try:
        return asset.get_batch_definition(BATCH_DEFINITION)
    except KeyError:
        return asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)
