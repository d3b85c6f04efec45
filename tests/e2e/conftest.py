"""End-to-end fixtures: a real Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor on
SQLite) on a free loopback port, with its own CTLOOP_HOME."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from tests.alert_helpers import WebhookReceiver, http_connection
from tests.conftest import REPO, write_params


@pytest.fixture(scope="module")
def e2e_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


def start_airflow(home: Path, schedule_end: date, extra_env: dict[str, str] | None = None,
                  **param_overrides: dict):  # type: ignore[no-untyped-def]
    from ctloop.core.settings import Settings
    from ctloop.dev.local_airflow import LocalAirflow, free_port

    params = write_params(home / "params.yaml", **param_overrides)
    settings = Settings(home=home / "ctloop", params=params, project_dir=REPO, schedule_end=schedule_end)
    airflow = LocalAirflow.from_settings(settings, port=free_port(), extra_env=extra_env)
    airflow.start()
    return airflow, settings


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    """The alerts' http endpoint (connection ctloop_alerts) of the embedded Airflow."""
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def running_airflow(e2e_home: Path, webhook: WebhookReceiver) -> Iterator[tuple]:  # type: ignore[type-arg]
    airflow, settings = start_airflow(
        e2e_home, schedule_end=date(2026, 1, 14),
        extra_env={"AIRFLOW_CONN_CTLOOP_ALERTS": http_connection(webhook.url)},
        source={"rows_per_day": 500, "incidents": {"2026-01-06": "schema_break"}},
    )
    try:
        yield airflow, settings
    finally:
        airflow.stop()
