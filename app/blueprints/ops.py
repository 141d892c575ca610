"""Health and readiness probes."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from app.extensions import db, redis_store
from app.security import access

blp = Blueprint("ops", __name__)


@blp.get("/healthz")
@access("public: liveness probe")
def healthz():
    """The process is up."""
    return jsonify(status="ok")


@blp.get("/readyz")
@access("public: readiness probe (names failing dependencies only)")
def readyz():
    """The database and Redis answer; 503 naming the one that does not."""
    checks = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        db.session.rollback()
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        redis_store.client.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {type(exc).__name__}"
    failed = [name for name, state in checks.items() if state != "ok"]
    if failed:
        body = {"error": {"code": "not_ready", "message": "服务未就绪",
                          "details": {"failed": failed, "checks": checks}}}
        return jsonify(body), 503
    return jsonify(status="ok", checks=checks)
