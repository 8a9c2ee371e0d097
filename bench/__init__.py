"""`make bench`: throughput and latency of the worker against the API ceiling and simple baselines.

Never part of CI: it prints figures and writes a report under ``bench/results/``; it does
not fail on speed. ``python -m bench --help`` lists the options.
"""
