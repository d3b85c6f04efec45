"""
### ctloop_rollback

Move `@champion` back in one compare-and-set step: to `@previous` by default, or to the version given.
The rolled-back version loses its gate pass (it can only return through a new gate); `@previous` and
`@previous-2` shift so that two earlier champions stay loadable. Recorded in the alias history
(`ctloop history`) and the audit log. The monitor rolls back on its own during a bake period.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException

from ctloop.airflow_edge import schedule_start, task_defaults


@dag(
    schedule=None,
    start_date=schedule_start(),
    catchup=False,
    max_active_runs=1,
    tags=["ctloop", "registry", "mlflow"],
    doc_md=__doc__,
    default_args=task_defaults(retries=1, retry_delay=timedelta(seconds=10)),
    params={
        "version": Param("previous", type="string", minLength=1, title="Roll back to",
                         description="a version number, or previous"),
        "reason": Param(type="string", minLength=3, title="Reason", description="why; audited"),
    },
)
def ctloop_rollback() -> None:
    @task
    def rollback(params=None, dag_run=None) -> dict:
        from ctloop.core.errors import PromotionConflict, RegistryError
        from ctloop.flows.tasks import rollback_champion

        try:
            return rollback_champion(params["version"], params["reason"], dag_run.dag_id, dag_run.run_id)
        except (PromotionConflict, RegistryError) as e:
            raise AirflowFailException(str(e)) from e

    rollback()


ctloop_rollback()
