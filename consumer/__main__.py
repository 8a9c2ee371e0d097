"""`python -m consumer` runs the command-line interface."""

from consumer.cli import main

raise SystemExit(main())
