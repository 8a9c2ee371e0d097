"""A plain, manually triggered Airflow DAG with one trivial task."""

from datetime import datetime

from _compat import DAG, task

with DAG(
    dag_id="devstack_plain",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    tags=["devstack"],
):

    @task
    def noop():
        return "ok"

    noop()
