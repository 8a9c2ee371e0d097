"""airflow-trigger-consumer: turns Kafka trigger requests into Apache Airflow DAG runs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("airflow-trigger-consumer")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
