"""Blueprint registry: every blueprint of the API is mounted here."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Register the ops routes and every flask-smorest blueprint."""
    from app.blueprints.open311 import blp as open311_blp
    from app.blueprints.ops import blp as ops_blp
    from app.extensions import api

    app.register_blueprint(ops_blp)
    from app.blueprints.screen.routes import page as screen_page

    app.add_url_rule("/screen", "screen_page", screen_page)
    app.register_blueprint(open311_blp)
    for module in BLUEPRINTS:
        api.register_blueprint(__import__(f"app.blueprints.{module}.routes", fromlist=["blp"]).blp)
    from app.blueprints.open311_spec import document as document_open311

    document_open311(api.spec)


# Each entry is a package app/blueprints/<name>/ with routes.py exposing `blp`.
BLUEPRINTS: list[str] = [
    "auth",
    "me",
    "community",
    "uploads",
    "reports",
    "tickets",
    "admin",
    "activities",
    "timebank",
    "notifications",
    "booking",
    "screen",
    "alarms",
    "canteen",
    "notices",
    "bff",
]
