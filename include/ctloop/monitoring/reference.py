"""The champion's reference: the training sample with its scores, stored with the version at training
time (``reference/sample.parquet`` on its MLflow run), cached once per version under ``CTLOOP_HOME``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ctloop.core.errors import RegistryError
from ctloop.monitoring.records import ChampionReference

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.core.params import Params
    from ctloop.core.settings import Settings

SCORE = "score"


def champion_reference(settings: Settings, params: Params) -> ChampionReference:
    """The champion's version, cached reference sample and test-set quality (the sample's target column
    is the only data read)."""
    import pyarrow.parquet as pq

    from ctloop.registry.mlflow_registry import configure_mlflow, require_champion

    client = configure_mlflow(settings)
    name = params.training.registered_model
    version = require_champion(client, name)
    run_id = client.get_model_version(name, version).run_id
    if run_id is None:
        raise RegistryError(f"{name} v{version} was registered without an MLflow run: it has no reference "
                            "profile to monitor against (register champions through ctloop_retrain)")
    cache = settings.home / "cache" / "reference" / f"{name}-v{version}.parquet"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        local = client.download_artifacts(run_id, "reference/sample.parquet", str(cache.parent))
        Path(local).rename(cache)
    quality = client.get_run(run_id).data.metrics.get(params.monitoring.quality_metric)
    target = params.dataset.target
    label_share = None
    if target in pq.ParquetFile(cache).schema_arrow.names:
        label_share = float(pq.read_table(cache, columns=[target]).column(0).to_pandas().mean())
    return ChampionReference(version, run_id, str(cache), quality, label_share)


def reference_sample(reference: ChampionReference) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(reference.sample_path).rename(columns={"prediction_score": SCORE})
