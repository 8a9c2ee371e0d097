"""Flow control (issue 30): per-DAG limits, durable deferral and ``not_before``.

``config`` reads the limits, ``parking`` decides what waits and turns a request into its
store row and back, ``releaser`` lets deferred requests go as the limits allow (one
replica at a time), ``queued`` counts Airflow's queued runs, ``waiting`` keeps what waits.
"""
