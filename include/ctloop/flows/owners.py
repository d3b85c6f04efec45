"""Owners in MLflow (``ctloop owners grant``): each owning team gets an MLflow RBAC role ``team_<team>`` with
``EDIT`` on its models' registered models and experiments, and its service user (``<team>``, password from
``CTLOOP_TEAM_<TEAM>_MLFLOW_PASSWORD``) is assigned to it. Everything else stays the basic-auth server's
``default_permission`` (READ), so a team reads every model and changes only its own. Idempotent: a second
run changes nothing; what it changes lands in the audit log (kind ``access``).

Needs the tracking server's basic-auth app (``mlflow server --app-name basic-auth``) and its admin in
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (MLflow's own variables)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ctloop.core.errors import ConfigError, DependencyUnavailable
from ctloop.core.owners import MLFLOW_PERMISSION, Ownership, airflow_role, ownerships, password_env

if TYPE_CHECKING:
    from ctloop.core.settings import Settings

WORKSPACE = "default"  # MLflow's workspace when workspaces are off


@dataclass(frozen=True)
class TeamGrant:
    team: str
    role: str
    models: tuple[str, ...]
    added: tuple[str, ...] = ()  # "registered_model:alpha EDIT", "user team-a", ... (empty: already so)
    user: str | None = None  # the team's service user (None: no password in the environment)
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def deployment_ownerships(settings: Settings, broken: list[str] | None = None) -> list[Ownership]:
    """Every owned model of the deployment. A spec that does not validate is a ConfigError naming it, or,
    given ``broken``, its error is added there and the other models are listed (as the DAG factory does)."""
    from ctloop.core.params import load_specs

    specs, errors = load_specs(settings)
    if errors and broken is None:
        raise ConfigError(next(iter(errors.values())))
    if broken is not None:
        broken.extend(errors.values())
    return ownerships(specs)


def _auth_client(settings: Settings) -> Any:
    from ctloop.registry.mlflow_registry import configure_mlflow

    uri = settings.tracking_uri
    if not uri.startswith(("http://", "https://")):
        raise ConfigError(f"ctloop owners grant: the tracking URI {uri} is not a server; owners need the MLflow "
                          "server's basic-auth app (mlflow server --app-name basic-auth)")
    if not os.environ.get("MLFLOW_TRACKING_USERNAME") or not os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        raise ConfigError("ctloop owners grant: MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD must name "
                          f"the admin of the basic-auth server at {uri}")
    configure_mlflow(settings)  # unreachable: DependencyUnavailable
    from mlflow.server.auth.client import AuthServiceClient

    return AuthServiceClient(uri)


def _call(what: str, uri: str, fn: Any, *args: Any) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return fn(*args)
    except MlflowException as e:
        text = str(e)
        if "401" in text or "403" in text:
            raise ConfigError(f"ctloop owners grant: {uri} refused {what} for MLFLOW_TRACKING_USERNAME="
                              f"{os.environ.get('MLFLOW_TRACKING_USERNAME')} (a wrong password, or not an admin)") from e
        if "404" in text:
            raise DependencyUnavailable(f"ctloop owners grant: {uri} has no basic-auth app ({what} answered 404); "
                                        "start it with mlflow server --app-name basic-auth") from e
        raise


def _ensure_resources(client: Any, owned: Ownership) -> str:
    """The model's registered model and experiment exist (created empty by the admin when missing, so that
    the team's first run and version land under its grant); the experiment's id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(owned.registered_model)
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(owned.registered_model)
    experiment = client.get_experiment_by_name(owned.experiment)
    return experiment.experiment_id if experiment is not None else mlflow.create_experiment(owned.experiment)


def grant_mlflow(settings: Settings) -> list[TeamGrant]:
    """Give each owning team EDIT on its models in MLflow (see the module's doc); one record per team."""
    from mlflow.exceptions import MlflowException

    from ctloop.core.audit import audit_log
    from ctloop.registry.mlflow_registry import configure_mlflow

    owned = deployment_ownerships(settings)
    if not owned:
        return []
    auth = _auth_client(settings)
    client = configure_mlflow(settings)
    uri = settings.tracking_uri
    roles = {r.name: r for r in _call("list roles", uri, auth.list_roles, WORKSPACE)}
    grants = []
    for team in sorted({o.team for o in owned}):
        name, models = airflow_role(team), [o for o in owned if o.team == team]
        added: list[str] = []
        role = roles.get(name)
        if role is None:
            role = _call("create role", uri, auth.create_role, WORKSPACE, name,
                         f"ctloop: edits the models owned by {team} ({', '.join(o.model for o in models)})")
            added.append(f"role {name}")
        have = {(p.resource_type, p.resource_pattern): p for p in auth.list_role_permissions(role.id)}
        for o in models:
            for kind, pattern in (("registered_model", o.registered_model),
                                  ("experiment", _ensure_resources(client, o))):
                current = have.get((kind, pattern))
                if current is None:
                    auth.add_role_permission(role.id, kind, pattern, MLFLOW_PERMISSION)
                elif current.permission != MLFLOW_PERMISSION:
                    auth.update_role_permission(current.id, MLFLOW_PERMISSION)
                else:
                    continue
                added.append(f"{kind}:{pattern} {MLFLOW_PERMISSION}")
        user, notes = None, []
        password = os.environ.get(password_env(team, "MLFLOW"), "")
        try:
            auth.get_user(team)
            user = team
        except MlflowException:
            if password:
                auth.create_user(team, password)
                user = team
                added.append(f"user {team}")
            else:
                notes.append(f"no {password_env(team, 'MLFLOW')}: no service user created")
        if user is not None and name not in {r.name for r in auth.list_user_roles(user)}:
            auth.assign_role(user, role.id)
            added.append(f"user {user} in {name}")
        grant = TeamGrant(team, name, tuple(o.model for o in models), tuple(added), user, tuple(notes))
        if added:
            for o in models:
                audit_log(settings).append("access", f"mlflow:{name}", "granted", reasons=added,
                                           details={"team": team, "tracking_uri": uri}, model=o.model)
        grants.append(grant)
    return grants
