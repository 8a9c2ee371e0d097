"""Kafka I/O: the consumer and producer wrappers and the offset bookkeeping between them."""
