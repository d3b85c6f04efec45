"""
### ctloop_approve

Manual promotion for `promotion.mode: manual`: a challenger that passed its gate waits as `@candidate`;
a person reviews it (MLflow run, gate decision, evaluation suites) and triggers this DAG with the
version and a reason. Approval of a version whose gate failed, or that was rolled back since its last
gate pass, is refused. The champion moves by compare-and-set; the approval is audited.
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
        "version": Param(type="string", minLength=1, title="Version", description="the @candidate version to promote"),
        "reason": Param(type="string", minLength=3, title="Reason", description="why it may go live; audited"),
    },
)
def ctloop_approve() -> None:
    @task
    def approve(params=None, dag_run=None) -> dict:
        from ctloop.core.errors import GateRejected, PromotionConflict, RegistryError
        from ctloop.flows.tasks import approve_candidate

        try:
            return approve_candidate(params["version"], params["reason"], dag_run.dag_id, dag_run.run_id)
        except (GateRejected, PromotionConflict, RegistryError) as e:
            raise AirflowFailException(str(e)) from e

    approve()


ctloop_approve()
