"""Flask CLI commands: `flask seed-demo`, `flask create-staff`, `flask outbox-relay`, ..."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Attach the project's commands to `flask`."""
    register_account_commands(app)
    register_outbox_commands(app)


def register_account_commands(app: Flask) -> None:
    """seed-demo and create-staff."""


def register_outbox_commands(app: Flask) -> None:
    """outbox-relay."""
