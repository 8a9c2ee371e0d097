"""Fault injection: the one allowed double, for failures a real Airflow cannot be made to show."""
