"""`trigger-consumer schema`: print the JSON Schemas of wire contract v1."""

from __future__ import annotations

import argparse
import json
import sys

from consumer.cli import EXIT_OK
from consumer.contract import (
    REPLY_SCHEMA_FILE,
    REQUEST_SCHEMA_FILE,
    json_schemas,
    render_json_schema,
)

HELP = "print the JSON Schema of the trigger request or the reply (both when omitted)"
SCHEMA_FILES = {"request": REQUEST_SCHEMA_FILE, "reply": REPLY_SCHEMA_FILE}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the optional schema name.

    Args:
        parser: the ``schema`` subparser.
    """
    parser.add_argument(
        "which",
        nargs="?",
        choices=sorted(SCHEMA_FILES),
        help="request or reply; without it, one JSON object holds both",
    )


def run(args: argparse.Namespace) -> int:
    """Print the chosen schema, exactly as stored in ``schemas/``.

    Args:
        args: the parsed flags.

    Returns:
        ``EXIT_OK``.
    """
    schemas = json_schemas()
    if args.which is None:
        both = {name: schemas[file] for name, file in SCHEMA_FILES.items()}
        sys.stdout.write(json.dumps(both, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_json_schema(schemas[SCHEMA_FILES[args.which]]))
    return EXIT_OK
