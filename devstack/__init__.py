"""The local stack: real Apache Kafka and Airflow 3/2 servers on loopback (spec §7).

Used by the tests (pytest fixtures), the benchmark and ``make demo`` alike::

    python -m devstack up [--airflow 3|2|both] [--dags DIR] [--json]
    python -m devstack down
    python -m devstack stop-api --airflow 3
    python -m devstack start-api --airflow 3
"""

from devstack.procs import StackError
from devstack.stack import Stack

__all__ = ["Stack", "StackError"]
