#!/bin/bash
# MLflow tracking server with basic auth. Its auth config needs the admin password, so it is written
# here from the environment (.env), into the container's /tmp, never into the repo.
set -euo pipefail
cat > /tmp/basic_auth.ini <<INI
[mlflow]
default_permission = READ
database_uri = postgresql+psycopg2://airflow:${POSTGRES_PASSWORD}@postgres/mlflow_auth
admin_username = ${MLFLOW_TRACKING_USERNAME}
admin_password = ${MLFLOW_TRACKING_PASSWORD}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
export MLFLOW_AUTH_CONFIG_PATH=/tmp/basic_auth.ini
exec mlflow server --host 0.0.0.0 --port 5000 \
  --backend-store-uri "postgresql+psycopg2://airflow:${POSTGRES_PASSWORD}@postgres/mlflow" \
  --artifacts-destination s3://mlflow --serve-artifacts --app-name basic-auth
