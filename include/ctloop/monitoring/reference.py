"""The champion's reference: the training sample with its scores, stored with the version at training
time (``reference/sample.parquet`` on its MLflow run), cached once per version under ``CTLOOP_HOME``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ctloop.core.errors import RegistryError
from ctloop.monitoring.calibration import Calibration
from ctloop.monitoring.records import ChampionReference

if TYPE_CHECKING:
    import pandas as pd

    from ctloop.core.params import Params
    from ctloop.core.settings import Settings

SCORE = "score"
CALIBRATION_ARTIFACT = "reference/calibration.json"


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
                            "profile to monitor against (register champions through <model>__retrain)")
    cache = settings.home / "cache" / "reference" / f"{name}-v{version}.parquet"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        local = client.download_artifacts(run_id, "reference/sample.parquet", str(cache.parent))
        Path(local).rename(cache)
    quality = client.get_run(run_id).data.metrics.get(params.monitoring.quality_metric)
    target = params.dataset.target
    label_share = label_cut = None
    label_shares: dict[str, float] | None = None
    if target in pq.ParquetFile(cache).schema_arrow.names:
        y = pq.read_table(cache, columns=[target]).column(0).to_pandas().astype("float64")
        if params.dataset.task == "multiclass":  # the distance of the labels' class shares from these: 0 here
            label_shares = {str(c): float((y == c).mean()) for c in params.dataset.classes}
            label_share = 0.0
        elif params.dataset.is_classifier:
            label_share = float(y.mean())
        else:  # a regression target's shift: the share above its training median (0.5 there, by definition)
            label_cut = float(y.median())
            label_share = float((y > label_cut).mean())
    calibration = cache.with_suffix(".calibration.json")
    if not calibration.exists():
        artifacts = {f.path for f in client.list_artifacts(run_id, "reference")}
        if CALIBRATION_ARTIFACT in artifacts:
            local = client.download_artifacts(run_id, CALIBRATION_ARTIFACT, str(cache.parent / f".{version}"))
            Path(local).rename(calibration)
    return ChampionReference(version, run_id, str(cache), quality, label_share,
                             str(calibration) if calibration.exists() else None, label_cut, label_shares)


def load_calibration(reference: ChampionReference) -> Calibration | None:
    import json

    if reference.calibration_path is None:
        return None
    return Calibration.from_dict(json.loads(Path(reference.calibration_path).read_text()))


def reference_sample(reference: ChampionReference) -> pd.DataFrame:
    return read_reference_sample(reference.sample_path)


def read_reference_sample(path: str | Path) -> pd.DataFrame:
    """A stored reference sample, its model scores in the column the prediction log uses."""
    import pandas as pd

    return pd.read_parquet(path).rename(columns={"prediction_score": SCORE})
