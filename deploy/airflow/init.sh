#!/usr/bin/env bash
# airflow-init: migrate the metadata DB (Airflow's and the FAB auth manager's tables), then create one user
# per ctloop role from the environment. Idempotent: an existing user is left as it is.
#
#   admin     FAB role Admin   everything, including users and roles          AIRFLOW_ADMIN_USER / _PASSWORD (required)
#   operator  FAB role Op      trigger DAGs (retrain with the form, ctloop_approve, ctloop_rollback),
#                              pause/unpause, clear and mark runs, connections  AIRFLOW_OPERATOR_USER / _PASSWORD
#   viewer    FAB role Viewer  read DAGs, runs, logs; cannot trigger or change AIRFLOW_VIEWER_USER / _PASSWORD
#
#   <team>    FAB roles Viewer + team_<team>: read everything; edit, trigger and clear the DAGs of the models
#             whose spec says `owner: <team>` (DAG-level access_control)   CTLOOP_TEAM_<TEAM>_AIRFLOW_PASSWORD
#
# A role whose password is empty gets no user. Passwords come from the environment (.env), never a file.
# The team roles are created before any DAG is parsed: a DAG's access_control may only name existing roles.
set -euo pipefail

airflow db migrate

existing="$(airflow users list --output json 2>/dev/null || echo '[]')"

create_user() {  # role username password [extra role]
  local role="$1" username="$2" password="$3" extra="${4:-}"
  if [ -z "$password" ]; then
    echo "ctloop init: no password for the ${role} user; not created"
    return 0
  fi
  if printf '%s' "$existing" | grep -q "\"username\": \"${username}\""; then
    echo "ctloop init: user ${username} exists; left as it is"
    return 0
  fi
  airflow users create --role "$role" --username "$username" --password "$password" \
    --firstname ctloop --lastname "$username" --email "${username}@example.invalid"
  if [ -n "$extra" ]; then
    airflow users add-role --username "$username" --role "$extra"
  fi
}

create_user Admin "${AIRFLOW_ADMIN_USER:-admin}" "${AIRFLOW_ADMIN_PASSWORD:?AIRFLOW_ADMIN_PASSWORD is not set}"
create_user Op "${AIRFLOW_OPERATOR_USER:-operator}" "${AIRFLOW_OPERATOR_PASSWORD:-}"
create_user Viewer "${AIRFLOW_VIEWER_USER:-viewer}" "${AIRFLOW_VIEWER_PASSWORD:-}"

for team in $(ctloop owners list --teams); do
  airflow roles create "team_${team}"
  var="CTLOOP_TEAM_$(printf '%s' "$team" | tr 'a-z-' 'A-Z_')_AIRFLOW_PASSWORD"
  create_user Viewer "$team" "${!var:-}" "team_${team}"
done
