#!/bin/bash
# First start of the PostgreSQL container: MLflow's backend store and its auth DB beside Airflow's.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<-SQL
  CREATE DATABASE mlflow;
  CREATE DATABASE mlflow_auth;
SQL
