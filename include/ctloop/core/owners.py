"""Who owns which model: pure mapping from the model specs' ``owner`` to what each team may change.

A spec's ``owner: <team>`` gives that team
- in Airflow (FAB auth manager): the role ``team_<team>``, granted on the model's DAGs only through DAG-level
  ``access_control`` (edit, trigger, clear); every other DAG is what the team's base role allows (``Viewer``:
  read only);
- in MLflow (basic-auth app): the user ``<team>`` with ``EDIT`` on the model's registered model and
  experiment only; everything else is the server's ``default_permission`` (``READ``).
No owner: the deployment-wide roles (Op, admin) alone change the model, as before."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ctloop.core.params import Params

FLOWS = ("ingest", "retrain", "monitor", "labels", "rollback", "approve", "rollout")
# what the owning role may do on each of its model's DAGs (FAB DAG-level resources and actions)
DAG_ACTIONS: dict[str, frozenset[str]] = {
    "DAGs": frozenset({"can_read", "can_edit"}),
    "DAG Runs": frozenset({"can_read", "can_create", "can_delete"}),
}
MLFLOW_PERMISSION = "EDIT"


def airflow_role(team: str) -> str:
    return f"team_{team}"


def password_env(team: str, system: str) -> str:
    """The environment variable holding a team user's password in ``system`` (``AIRFLOW`` or ``MLFLOW``)."""
    return f"CTLOOP_TEAM_{team.upper().replace('-', '_')}_{system}_PASSWORD"


@dataclass(frozen=True)
class Ownership:
    model: str
    team: str
    registered_model: str
    experiment: str

    @property
    def role(self) -> str:
        return airflow_role(self.team)

    @property
    def dag_ids(self) -> tuple[str, ...]:
        return tuple(f"{self.model}__{flow}" for flow in FLOWS)


def ownership(model: str, params: Params) -> Ownership | None:
    if params.owner is None:
        return None
    return Ownership(model, params.owner, params.training.registered_model, params.training.experiment)


def ownerships(specs: Mapping[str, Params]) -> list[Ownership]:
    """Every owned model, sorted by model name."""
    return [o for name in sorted(specs) if (o := ownership(name, specs[name])) is not None]


def access_control(params: Params) -> dict[str, dict[str, set[str]]] | None:
    """The DAG-level ``access_control`` of the model's DAGs: its owning team's role only (None: no owner)."""
    if params.owner is None:
        return None
    return {airflow_role(params.owner): {resource: set(actions) for resource, actions in DAG_ACTIONS.items()}}
