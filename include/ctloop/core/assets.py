"""Names of the Airflow Assets that connect the DAGs (strings only: the library does not import Airflow)."""

CURATED = "ctloop_curated_data"
DRIFT = "ctloop_drift_detected"
ROLLBACK_ALERT = "ctloop_rollback_alert"
LABELS = "ctloop_labels_arrived"
