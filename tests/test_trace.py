"""Trace context: W3C traceparent parsing, conf injection, reply headers."""

from __future__ import annotations

from consumer.trace import AIRFLOW_TRACE_CONF_KEY, parse_trace, trace_from_headers, with_trace

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_only_valid_traceparents_are_kept() -> None:
    """Malformed, all-zero or version-ff traceparents are ignored, as receivers must."""
    assert parse_trace(TP) is not None
    assert parse_trace("00-" + "0" * 32 + "-00f067aa0ba902b7-01") is None
    assert parse_trace("ff" + TP[2:]) is None
    assert parse_trace(TP.upper()) is None
    assert parse_trace(TP + "-extra") is None


def test_headers_give_the_context_and_it_goes_into_conf() -> None:
    """The traceparent/tracestate headers become conf[airflow/dagrun_parent_trace_context]."""
    trace = trace_from_headers((("traceparent", TP.encode()), ("tracestate", b"a=1")))
    assert trace is not None
    assert with_trace({"x": 1}, trace) == {
        "x": 1,
        AIRFLOW_TRACE_CONF_KEY: {"traceparent": TP, "tracestate": "a=1"},
    }
    assert with_trace({AIRFLOW_TRACE_CONF_KEY: "mine"}, trace) == {AIRFLOW_TRACE_CONF_KEY: "mine"}
    assert trace.as_headers() == (("traceparent", TP.encode()), ("tracestate", b"a=1"))
