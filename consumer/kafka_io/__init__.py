"""Kafka I/O: the only place that builds kafka-python clients and turns their records into ours.

Modules:
    clients     open_consumer / open_producer / open_acked_producer / open_admin, each
                starting from ``security.connection_options``
    records     to_inbound: a kafka-python ``ConsumerRecord`` as an ``InboundRecord``
    security    Settings → connection keyword arguments (PLAINTEXT, SSL, SASL)
    preflight   one connection per bootstrap server before any client starts
    source      RequestSource: the worker's group consumer (poll, pause/resume, commit)
    sink        RecordSink: the worker's producer of replies and dead-letter records
    offsets     OffsetTracker: which offsets may be committed (pure, no I/O)
    reader      replay's bounded group-less reader and send's TailReader
    writer      RecordWriter: replay's producer, confirmed at the end
"""
