"""Linli (邻里): the backend of a community service mini-program."""

from __future__ import annotations

import logging
import re
import uuid

from flask import Flask, g, request
from werkzeug.routing import IntegerConverter

from app import admission
from app.config import load_config
from app.jsonio import OrjsonProvider

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
BODY_METHODS = {"POST", "PUT", "PATCH"}
FORM_ENDPOINT_PREFIXES = ("/open311/",)
MAX_DATABASE_ID = 2**31 - 1  # PostgreSQL `integer`, the type of every primary key


def create_app(config: dict | None = None) -> Flask:
    """Build the application: config, extensions, blueprints, error handlers, commands."""
    app = Flask(__name__, instance_relative_config=True)
    app.json = OrjsonProvider(app)
    app.config.update(load_config(config))
    register_logging(app)
    register_extensions(app)
    register_request_hooks(app)
    register_converters(app)
    register_blueprints(app)
    register_errors(app)
    register_commands(app)
    register_benchmark(app)
    admission.install(app)
    return app


def register_extensions(app: Flask) -> None:
    """Bind db, migrations, JWT, Redis/RQ and the OpenAPI layer to the app."""
    from app import models  # noqa: F401 - every table registered on the metadata
    from app.extensions import api, db, jwt, migrate, redis_store
    from app.security import register_jwt_handlers

    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        from app.config import INSTANCE_DIR

        INSTANCE_DIR.mkdir(exist_ok=True)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(_migrations_dir()))
    jwt.init_app(app)
    register_jwt_handlers(app)
    redis_store.init_app(app)
    api.init_app(app)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    # The big screen's token (flask screen-token): a header, or ?token= for EventSource.
    api.spec.components.security_scheme(
        "screenToken", {"type": "apiKey", "in": "header", "name": "X-Screen-Token"})
    api.spec.components.security_scheme(
        "screenTokenQuery", {"type": "apiKey", "in": "query", "name": "token"})
    _sqlite_pragmas(app)
    _keep_prepared_statements(app)
    _cache_hooks()


_HOOKS_INSTALLED = False


def _cache_hooks() -> None:
    """Bump cache generations after commits that wrote watched tables (once per process)."""
    global _HOOKS_INSTALLED
    if not _HOOKS_INSTALLED:
        from sqlalchemy.orm import Session

        from app.services.cache import install_session_hooks

        install_session_hooks(Session)
        _HOOKS_INSTALLED = True


def _migrations_dir():
    from app.config import ROOT

    return ROOT / "migrations"


def _sqlite_pragmas(app: Flask) -> None:
    """Enforce foreign keys and wait on locks on SQLite, as PostgreSQL would."""
    from sqlalchemy import event

    from app.extensions import db

    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    with app.app_context():
        @event.listens_for(db.engine, "connect")
        def _on_connect(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()


def _keep_prepared_statements(app: Flask) -> None:
    """PostgreSQL: read-only transactions end with COMMIT, so prepared statements survive."""
    from app.extensions import db
    from app.prepared import keep_prepared_statements

    with app.app_context():
        keep_prepared_statements(db.engine)


class DatabaseIdConverter(IntegerConverter):
    """`<int:...>` in every route: ids beyond the database's integer range match no route (404).

    Without the bound a fuzzed id such as 2**70 reached the database and failed there (500).
    """

    def __init__(self, url_map, *args, **kwargs) -> None:
        kwargs.setdefault("max", MAX_DATABASE_ID)
        super().__init__(url_map, *args, **kwargs)


def register_converters(app: Flask) -> None:
    """URL converters shared by every blueprint (registered before any route)."""
    app.url_map.converters["int"] = DatabaseIdConverter


def register_blueprints(app: Flask) -> None:
    """Mount every blueprint (flask-smorest ones through the Api, so they are documented)."""
    from app.blueprints import register

    register(app)


def register_errors(app: Flask) -> None:
    """One JSON error shape for every non-2xx response."""
    from app.errors import register_error_handlers

    register_error_handlers(app)


def register_commands(app: Flask) -> None:
    """Flask CLI commands: seed-demo, create-staff, outbox-relay..."""
    from app.commands import register

    register(app)


def register_benchmark(app: Flask) -> None:
    """The benchmark's hooks (floor route, SQL statement header, full collections' pauses),
    only when LINLI_BENCH=1."""
    from app import benchmark

    if benchmark.enabled():
        benchmark.register(app)


class RequestIdFilter(logging.Filter):
    """Put the current request id on every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.request_id = g.get("request_id", "-")
        except RuntimeError:
            record.request_id = "-"
        return True


def register_logging(app: Flask) -> None:
    """Log lines carry the request id."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")
    )
    root = logging.getLogger("app")
    root.handlers = [handler]
    root.setLevel(app.config["LOG_LEVEL"])
    root.propagate = False


def register_request_hooks(app: Flask) -> None:
    """Request ids on every response; JSON bodies required on JSON endpoints."""
    from app.errors import error_response

    @app.before_request
    def _request_id():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex

    @app.before_request
    def _require_json_body():
        if request.method not in BODY_METHODS or not request.content_length:
            return None
        if request.path.startswith(FORM_ENDPOINT_PREFIXES) or request.mimetype in (
            "application/json", "multipart/form-data"
        ):
            return None
        return error_response(415, "unsupported_media_type", "请求体须为 JSON")

    @app.after_request
    def _echo_request_id(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response

    @app.after_request
    def _security_headers(response):
        return add_security_headers(response, request.path)


# Pages a browser renders get a Content-Security-Policy; JSON gets the basic headers. No CORS:
# the mini-program is not a browser origin and the big screen is served from this origin.
PAGE_POLICIES = {
    "/screen": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "/docs": "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
             "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
             "img-src 'self' data: https://cdn.jsdelivr.net; connect-src 'self'; "
             "frame-ancestors 'none'; base-uri 'none'",
}


def add_security_headers(response, path: str):
    """nosniff, no referrer, no framing everywhere; a CSP on the pages."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    policy = PAGE_POLICIES.get(path.rstrip("/"))
    if policy:
        response.headers["Content-Security-Policy"] = policy
        response.headers.setdefault("Cache-Control", "no-store")
    return response
