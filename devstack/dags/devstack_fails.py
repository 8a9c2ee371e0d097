"""An Airflow DAG whose only task fails, so its runs end in `failed`."""

from datetime import datetime

from _compat import DAG, task

with DAG(
    dag_id="devstack_fails",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    default_args={"retries": 0},
    tags=["devstack"],
):

    @task
    def fail():
        raise RuntimeError("devstack_fails fails on purpose")

    fail()
