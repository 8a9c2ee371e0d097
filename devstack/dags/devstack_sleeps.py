"""An Airflow DAG that sleeps `seconds` (default 3): runs that stay `running` for a while."""

import time
from datetime import datetime

from _compat import DAG, Param, task

with DAG(
    dag_id="devstack_sleeps",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    params={"seconds": Param(3, type="integer", minimum=0, maximum=300)},
    tags=["devstack"],
):

    @task
    def sleep(params=None):
        time.sleep(params["seconds"])

    sleep()
