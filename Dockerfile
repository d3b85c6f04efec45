# The ctloop image: the official Airflow image plus ctloop's pinned stack and the package. The same image
# runs every Airflow component, the MLflow tracking server and `ctloop serve` in docker-compose.yaml.
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:root requirements.txt requirements-prod.txt /opt/ctloop/
# Airflow's constraints are already baked into the image; ctloop's pins are the ones its tests ran with
RUN pip install --no-cache-dir -r /opt/ctloop/requirements.txt -r /opt/ctloop/requirements-prod.txt

COPY --chown=airflow:root pyproject.toml README.md /opt/ctloop/
COPY --chown=airflow:root models /opt/ctloop/models
COPY --chown=airflow:root include /opt/ctloop/include
COPY --chown=airflow:root great_expectations /opt/ctloop/great_expectations
COPY --chown=airflow:root deploy/airflow /opt/ctloop/deploy/airflow
RUN pip install --no-cache-dir --no-deps -e /opt/ctloop

COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins

ENV CTLOOP_MODELS_DIR=/opt/ctloop/models \
    CTLOOP_GX_DIR=/opt/ctloop/great_expectations \
    CTLOOP_HOME=/opt/ctloop/home \
    DO_NOT_TRACK=1 \
    SCARF_ANALYTICS=false \
    MLFLOW_DISABLE_TELEMETRY=true \
    DVC_NO_ANALYTICS=1 \
    GX_ANALYTICS_ENABLED=false
