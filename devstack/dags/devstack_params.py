"""An Airflow DAG with typed params: Airflow rejects a conf that breaks them (400)."""

from datetime import datetime

from _compat import DAG, Param, task

with DAG(
    dag_id="devstack_params",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    params={
        "n": Param(1, type="integer", minimum=0, maximum=100),
        "name": Param("x", type="string", maxLength=20),
    },
    tags=["devstack"],
):

    @task
    def show(params=None):
        return {"n": params["n"], "name": params["name"]}

    show()
