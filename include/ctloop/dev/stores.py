"""Create the local stores under ``CTLOOP_HOME``: the Parquet lake, the MLflow tracking DB and artifact
root, the Airflow home with its migrated SQLite metadata DB, and the DVC cache."""

from __future__ import annotations

from ctloop.core.settings import Settings, get_settings


def init_stores(settings: Settings | None = None, airflow: bool = True) -> list[str]:
    from ctloop.data.store import Lake
    from ctloop.dev.local_airflow import LocalAirflow

    s = settings or get_settings()
    lines = []
    Lake(s.lake_root).init()
    lines.append(f"lake:     {s.lake_root}")
    (s.home / "mlflow" / "artifacts").mkdir(parents=True, exist_ok=True)
    lines.append(f"mlflow:   {s.tracking_uri} (artifacts {s.artifact_root})")
    (s.home / "dvc-cache").mkdir(parents=True, exist_ok=True)
    lines.append(f"dvc:      cache {s.home / 'dvc-cache'}, remote {s.dvc_remote_url} (the lake is a DVC project)")
    s.audit_dir.mkdir(parents=True, exist_ok=True)
    lines.append(f"audit:    {s.audit_dir / 'audit.jsonl'} (hash-chained; `ctloop audit verify`)")
    if airflow:
        LocalAirflow.from_settings(s).migrate()
        lines.append(f"airflow:  {s.airflow_home} (SQLite metadata DB migrated)")
    return lines
