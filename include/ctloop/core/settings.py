"""Runtime settings: paths and URIs from ``CTLOOP_*`` environment variables (typed, pydantic-settings).

Policies (dataset contract, thresholds) are not here: they live in one spec per model, ``models/<name>.yaml``
(see ``ctloop.core.params``). A process acts for one model at a time: ``CTLOOP_MODEL`` (``--model`` on the
CLI), the only model when there is one, or :meth:`Settings.for_model`.
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ctloop.core.errors import ConfigError

PROJECT_DIR = Path(__file__).resolve().parents[3]
DEFAULTS_FILE = "_defaults.yaml"  # the shared defaults beside the model specs
MODEL_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


def list_models(models_dir: Path) -> list[str]:
    """The models of a deployment: one ``<name>.yaml`` per model in the models folder, sorted. A file whose
    name is not a model name (lowercase letters, digits, ``_``) is refused, naming it."""
    if not models_dir.is_dir():
        return []
    names = []
    for path in sorted(models_dir.glob("*.yaml")):
        if path.name == DEFAULTS_FILE:
            continue
        if not MODEL_NAME.fullmatch(path.stem):
            raise ConfigError(f"{path}: {path.stem!r} is not a model name (lowercase letters, digits and _, "
                              f"starting with a letter, at most 63)")
        names.append(path.stem)
    return names





class Settings(BaseSettings):
    """Where ctloop keeps things. Every field is overridable as ``CTLOOP_<FIELD>``."""

    # an empty variable is a value, not "unset": CTLOOP_SERVING_TOKEN= must be refused, never mean "no auth"
    model_config = SettingsConfigDict(env_prefix="CTLOOP_", frozen=True, extra="ignore")

    project_dir: Path = PROJECT_DIR
    home: Path = Field(default=PROJECT_DIR / ".ctloop", description="root of every local store")
    # the deployment's models: one <name>.yaml each, shared defaults in _defaults.yaml
    models_dir: Path = PROJECT_DIR / "models"
    # the deployment's LLM apps: one <name>.yaml each (kind: llm_app)
    apps_dir: Path = PROJECT_DIR / "apps"
    model: str | None = Field(default=None, description="the model this process acts for")
    # one model's spec file instead of a models folder (a one-model deployment; its lake is not prefixed)
    params: Path | None = None
    gx_dir: Path = PROJECT_DIR / "great_expectations"
    lake: Path | None = Field(default=None, description="Parquet lake root; default <home>/lake")
    mlflow_tracking_uri: str | None = None
    mlflow_artifact_root: str | None = None
    # where people browse MLflow (the Airflow tasks' "MLflow run" links); default: the tracking server when
    # it is one, else `mlflow ui`'s own address
    mlflow_ui_url: str | None = None
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
        if self.params is None and self.model is None:
            try:
                names = list_models(self.models_dir)
            except Exception:  # a misnamed spec: reported by whatever asks for a model (spec_path)
                names = []
            if len(names) == 1:
                object.__setattr__(self, "model", names[0])
        home = self.home.expanduser().resolve()
        object.__setattr__(self, "home", home)
        if self.lake is None:
            object.__setattr__(self, "lake", home / "lake")
        else:
            object.__setattr__(self, "lake", self.lake.expanduser().resolve())
        if self.mlflow_tracking_uri is None:
            object.__setattr__(self, "mlflow_tracking_uri", f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
        if self.mlflow_ui_url is None:
            tracking = self.mlflow_tracking_uri or ""
            object.__setattr__(self, "mlflow_ui_url", tracking if tracking.startswith(("http://", "https://"))
                               else "http://localhost:5000")
        if self.mlflow_artifact_root is None:
            object.__setattr__(self, "mlflow_artifact_root", (home / "mlflow" / "artifacts").as_uri())
        return self

    def mlflow_run_url(self, experiment_id: str, run_id: str) -> str:
        """The MLflow UI's page of a run."""
        return f"{(self.mlflow_ui_url or '').rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    @property
    def lake_root(self) -> Path:
        """This model's part of the lake: ``<lake>/<model>/`` in a models folder (the lake root for a
        single ``CTLOOP_PARAMS`` file)."""
        assert self.lake is not None
        return self.lake / self.model if self.params is None and self.model else self.lake

    def model_names(self) -> list[str]:
        """Every model of the deployment (a single spec file: its ``dataset.name``, checked when it is loaded)."""
        if self.params is not None:
            import yaml

            try:
                raw = yaml.safe_load(self.params.read_text())
            except (OSError, yaml.YAMLError):
                raw = None  # reported, naming the file, when the spec is loaded
            dataset = raw.get("dataset") if isinstance(raw, dict) else None
            name = dataset.get("name") if isinstance(dataset, dict) else None
            return [str(name) if name else self.params.stem]
        return list_models(self.models_dir)

    @property
    def spec_path(self) -> Path:
        """The spec file of the model this process acts for; a :class:`ConfigError` listing the models when
        that is unknown or ambiguous."""
        if self.params is not None:
            return self.params
        names = self.model_names()
        if self.model is None:
            if not names:
                raise ConfigError(f"{self.models_dir}: no model specs (<name>.yaml) here; set CTLOOP_MODELS_DIR "
                                  f"or CTLOOP_PARAMS")
            raise ConfigError(f"several models ({', '.join(names)}): name one with --model NAME (or CTLOOP_MODEL)")
        if self.model not in names:
            raise ConfigError(f"--model {self.model}: no such model in {self.models_dir} "
                              f"(models: {', '.join(names) or 'none'})")
        return self.models_dir / f"{self.model}.yaml"

    def process_env(self) -> dict[str, str]:
        """The ``CTLOOP_*`` variables that make a child process (``ctloop serve``, Airflow) see the same
        deployment, acting for the same model."""
        env = {"CTLOOP_HOME": str(self.home)}
        if self.params is not None:
            env["CTLOOP_PARAMS"] = str(self.params)
        else:
            env["CTLOOP_MODELS_DIR"] = str(self.models_dir)
        if self.model is not None:
            env["CTLOOP_MODEL"] = self.model
        return env

    def for_model(self, name: str | None) -> Settings:
        """These settings acting for model ``name`` (None: unchanged). With a single spec file the name must
        be its model's."""
        if name is None or name == self.model:
            return self
        if self.params is not None:
            if name not in self.model_names():
                raise ConfigError(f"--model {name}: {self.params} holds model {self.model_names()[0]!r}")
            return self
        return self.model_copy(update={"model": name})

    @property
    def dvc_remote_url(self) -> str:
        return self.dvc_remote or str(self.home / "dvc-remote")

    @property
    def state_dir(self) -> Path:
        """This model's runtime state (the serving routes file): ``<home>/models/<model>`` in a models folder,
        the home for a single ``CTLOOP_PARAMS`` file."""
        return self.home / "models" / self.model if self.params is None and self.model else self.home

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
