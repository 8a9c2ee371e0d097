"""An Airflow DAG that fails on its first try and succeeds once cleared (re-runs, issue 29).

``prepare`` always succeeds; ``flaky`` fails on its first try and passes on any later one,
so a run ends ``failed``, and ends ``success`` after a clear (all tasks, or only failed).
"""

from datetime import datetime

from _compat import DAG, task

with DAG(
    dag_id="devstack_flaky",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    default_args={"retries": 0},
    tags=["devstack"],
):

    @task
    def prepare():
        return 1

    @task
    def flaky(_value, **context):
        if context["ti"].try_number <= 1:
            raise RuntimeError("devstack_flaky fails on its first try on purpose")

    flaky(prepare())
