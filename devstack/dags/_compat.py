"""Imports that work on Airflow 3 (airflow.sdk) and Airflow 2 alike."""

try:
    from airflow.sdk import DAG, Param, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task
    from airflow.models.param import Param

__all__ = ["DAG", "Param", "task"]
