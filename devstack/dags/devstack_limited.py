"""An Airflow DAG that stays paused, for the flow-control tests alone: its runs are theirs."""

from datetime import datetime

from _compat import DAG, task

with DAG(
    dag_id="devstack_limited",
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
