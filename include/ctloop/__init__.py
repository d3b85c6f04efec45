"""ctloop: the continuous-training and evaluation loop for ML teams on Airflow."""

__version__ = "0.1.0"
