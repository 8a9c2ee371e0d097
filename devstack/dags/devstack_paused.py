"""An Airflow DAG that stays paused: runs are created but stay queued."""

from datetime import datetime

from _compat import DAG, task

with DAG(
    dag_id="devstack_paused",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    is_paused_upon_creation=True,
    tags=["devstack"],
):

    @task
    def noop():
        return "ok"

    noop()
