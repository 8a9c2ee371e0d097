"""`trigger-consumer run`: load settings, configure logs, start the worker."""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import sys
from pathlib import Path

import structlog

from consumer import __version__
from consumer.cli import EXIT_OK, EXIT_USAGE
from consumer.errors import ConfigError
from consumer.settings import describe_settings, load_settings

HELP = "consume trigger requests and create DAG runs (settings from TRIGGER_CONSUMER_*)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``run``; the settings table goes into ``--help``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    width = max(len(variable) for variable, _, _ in describe_settings())
    rows = [
        f"  {variable:<{width}}  {meaning} [default: {default}]"
        for variable, default, meaning in describe_settings()
    ]
    parser.epilog = (
        "settings (environment variables, or the same names in lower case in the TOML file):\n"
        + "\n".join(rows)
    )
    parser.add_argument("--config", type=Path, help="TOML config file")


def run(args: argparse.Namespace) -> int:
    """Start the worker; exit 0 after a clean stop, 2 on a configuration error."""
    from consumer.assembly import build_worker  # noqa: PLC0415 -- keeps --help fast
    from consumer.collector import tune_for_worker  # noqa: PLC0415
    from consumer.health import HealthServer  # noqa: PLC0415
    from consumer.logs import configure_logging  # noqa: PLC0415
    from consumer.metrics import Metrics  # noqa: PLC0415
    from consumer.readiness import Readiness  # noqa: PLC0415
    from consumer.worker import StopReason  # noqa: PLC0415

    try:
        settings = load_settings(args.config, for_run=True)
    except ConfigError as exc:
        print(f"trigger-consumer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_format, settings.log_level)
    worker_name = f"{socket.gethostname()}-{os.getpid()}/{__version__}"
    readiness, metrics = Readiness(), Metrics()
    try:
        worker = build_worker(settings, worker_name, readiness, metrics)
    except (ConfigError, ssl.SSLError) as exc:
        # an untrusted broker certificate is a configuration error, not a crash
        structlog.get_logger(__name__).critical("configuration_error", error=str(exc))
        return EXIT_USAGE
    worker.install_signal_handlers()
    tune_for_worker()
    if settings.http_port == 0:
        reason = worker.run()
    else:
        with HealthServer(
            settings.http_port, readiness, metrics, host=settings.http_host
        ) as server:
            structlog.get_logger(__name__).info("http_listening", port=server.port)
            reason = worker.run()
    # a configuration error (credentials, TLS) met while running exits as one met at start
    return EXIT_USAGE if reason is StopReason.CONFIG_ERROR else EXIT_OK
