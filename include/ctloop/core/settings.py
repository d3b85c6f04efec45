"""Runtime settings: paths and URIs from ``CTLOOP_*`` environment variables (typed, pydantic-settings).

Policies (dataset contract, thresholds) are not here: they live in ``params.yaml`` (see ``ctloop.core.params``).
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_DIR = Path(__file__).resolve().parents[3]


class Settings(BaseSettings):
    """Where ctloop keeps things. Every field is overridable as ``CTLOOP_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="CTLOOP_", frozen=True, extra="ignore")

    project_dir: Path = PROJECT_DIR
    home: Path = Field(default=PROJECT_DIR / ".ctloop", description="root of every local store")
    params: Path = PROJECT_DIR / "params.yaml"
    gx_dir: Path = PROJECT_DIR / "great_expectations"
    lake: Path | None = Field(default=None, description="Parquet lake root; default <home>/lake")
    mlflow_tracking_uri: str | None = None
    mlflow_artifact_root: str | None = None
    dvc_remote: str | None = Field(default=None, description="DVC remote URL or path; default <home>/dvc-remote")
    airflow_port: int = 8080
    # `ctloop serve`: when set, every route but /health needs `Authorization: Bearer <token>`
    serving_token: SecretStr | None = None
    # Time-based DAG schedules stop after this day (the DAGs' end_date). The demo and the end-to-end tests
    # run on a simulated calendar and set it to the calendar's last day, so the real clock adds no runs;
    # backfills, manual and asset-triggered runs are unaffected.
    schedule_end: date | None = None
    # ctloop's own metrics (ctloop.core.metrics): StatsD over UDP, off unless a host is set
    statsd_host: str | None = None
    statsd_port: int = 9125
    statsd_prefix: str = "ctloop"
    # MLflow over HTTP: a bounded back-off, so an outage is reported in seconds, not minutes (DAG tasks
    # retry through Airflow on top of this)
    mlflow_retries: int = Field(default=2, ge=0, le=10)
    mlflow_timeout_seconds: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        home = self.home.expanduser().resolve()
        object.__setattr__(self, "home", home)
        if self.lake is None:
            object.__setattr__(self, "lake", home / "lake")
        else:
            object.__setattr__(self, "lake", self.lake.expanduser().resolve())
        if self.mlflow_tracking_uri is None:
            object.__setattr__(self, "mlflow_tracking_uri", f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
        if self.mlflow_artifact_root is None:
            object.__setattr__(self, "mlflow_artifact_root", (home / "mlflow" / "artifacts").as_uri())
        return self

    @property
    def lake_root(self) -> Path:
        assert self.lake is not None
        return self.lake

    @property
    def dvc_remote_url(self) -> str:
        return self.dvc_remote or str(self.home / "dvc-remote")

    @property
    def audit_dir(self) -> Path:
        return self.home / "audit"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def data_docs_dir(self) -> Path:
        return self.home / "data_docs"

    @property
    def tracking_uri(self) -> str:
        assert self.mlflow_tracking_uri is not None
        return self.mlflow_tracking_uri

    @property
    def artifact_root(self) -> str:
        assert self.mlflow_artifact_root is not None
        return self.mlflow_artifact_root


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
