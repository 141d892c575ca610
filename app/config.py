"""Settings read from the environment, with embedded defaults for development."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = ROOT / "instance"

# Development-only values: production refuses to start while any of them is configured.
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789abcdef"  # noqa: S105
DEV_WX_APPID = "wx-dev-appid"
DEV_WX_SECRET = "wx-dev-secret"  # noqa: S105
MOCK_WX_API_BASE = "inprocess://mock-wechat"
ENVIRONMENTS = ("development", "production", "testing")


class ConfigError(RuntimeError):
    """The configuration cannot be used in the selected environment."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def load_config(overrides: dict | None = None) -> dict:
    """Build the Flask config mapping from the environment plus explicit overrides."""
    env = _env("LINLI_ENV", "development")
    if env not in ENVIRONMENTS:
        raise ConfigError(f"LINLI_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
    default_db = f"sqlite:///{INSTANCE_DIR / ('linli-test.db' if env == 'testing' else 'linli.db')}"
    cfg = {
        "LINLI_ENV": env,
        "TESTING": env == "testing",
        "SQLALCHEMY_DATABASE_URI": _env("DATABASE_URL", default_db),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        # PostgreSQL's bounds on a wait (see _postgres_options); 0: none
        "DB_CONNECT_TIMEOUT_SECONDS": _int("DB_CONNECT_TIMEOUT_SECONDS", 5),
        "DB_LOCK_TIMEOUT_MS": _int("DB_LOCK_TIMEOUT_MS", 10_000),
        "DB_STATEMENT_TIMEOUT_MS": _int("DB_STATEMENT_TIMEOUT_MS", 30_000),
        "REDIS_URL": _env("REDIS_URL"),
        "JWT_SECRET_KEY": _env("JWT_SECRET_KEY", DEV_JWT_SECRET),
        "JWT_ACCESS_TOKEN_EXPIRES": timedelta(minutes=_int("JWT_ACCESS_MINUTES", 30)),
        "JWT_REFRESH_TOKEN_EXPIRES": timedelta(days=_int("JWT_REFRESH_DAYS", 30)),
        "JWT_ALGORITHM": "HS256",
        "JWT_DECODE_ALGORITHMS": ["HS256"],
        "JWT_TOKEN_LOCATION": ["headers"],
        "WX_APPID": _env("WX_APPID", DEV_WX_APPID),
        "WX_SECRET": _env("WX_SECRET", DEV_WX_SECRET),
        "WX_API_BASE": _env("WX_API_BASE", MOCK_WX_API_BASE),
        "WX_TIMEOUT_SECONDS": float(_env("WX_TIMEOUT_SECONDS", "5")),
        "WX_TEMPLATES": json.loads(_env("WX_TEMPLATES", "{}")),
        "MAX_CONTENT_LENGTH": _int("MAX_CONTENT_LENGTH", 12 * 1024 * 1024),
        # requests of one process running at once, the rest queued first come first served
        # (app/admission.py); 0 runs every request as soon as a thread takes it
        "WEB_ACTIVE_REQUESTS": _int("WEB_ACTIVE_REQUESTS", 3),
        # A worker holds a routine job while the web's requests wait for a turn, for at most so
        # many seconds a job; urgent jobs never wait (workers/yielding.py). 0: never hold
        "WORKER_YIELD_SECONDS": float(_env("WORKER_YIELD_SECONDS", "1")),
        "LOGIN_MAX_FAILURES": _int("LOGIN_MAX_FAILURES", 5),
        "LOGIN_FAILURE_WINDOW_SECONDS": _int("LOGIN_FAILURE_WINDOW_SECONDS", 900),
        "DEFAULT_TIMEZONE": _env("DEFAULT_TIMEZONE", "Asia/Shanghai"),
        "UPLOAD_DIR": _env("UPLOAD_DIR", str(INSTANCE_DIR / "uploads")),
        "TIMEBANK_POINTS_PER_HOUR": _int("TIMEBANK_POINTS_PER_HOUR", 10),
        "ACTIVITY_CHECKIN_GRACE_MINUTES": _int("ACTIVITY_CHECKIN_GRACE_MINUTES", 120),
        "UPLOAD_MAX_BYTES": _int("UPLOAD_MAX_BYTES", 10 * 1024 * 1024),
        "UPLOAD_MAX_PIXELS": _int("UPLOAD_MAX_PIXELS", 40_000_000),
        # a household orders a few meals a day; a burst beyond this is a script or a stuck client
        "ORDER_RATE_LIMIT": _int("ORDER_RATE_LIMIT", 20),
        "ORDER_RATE_WINDOW_SECONDS": _int("ORDER_RATE_WINDOW_SECONDS", 3600),
        # a resident reports what they see; more than this an hour is a script or a stuck client
        "REPORT_RATE_LIMIT": _int("REPORT_RATE_LIMIT", 10),
        "REPORT_RATE_WINDOW_SECONDS": _int("REPORT_RATE_WINDOW_SECONDS", 3600),
        "UPLOAD_RATE_LIMIT": _int("UPLOAD_RATE_LIMIT", 60),
        "UPLOAD_RATE_WINDOW_SECONDS": _int("UPLOAD_RATE_WINDOW_SECONDS", 3600),
        "MEDIA_BASE_URL": _env("MEDIA_BASE_URL", ""),
        # how long a process serves shared screen data (categories, home's activities, menus,
        # notices) from its own copy before asking Redis again; 0: ask every time
        "CACHE_LOCAL_SECONDS": float(_env("CACHE_LOCAL_SECONDS", "1")),
        "OUTBOX_RETRY_INTERVALS": [
            int(v) for v in _env("OUTBOX_RETRY_INTERVALS", "5,30,120,600,1800").split(",")],
        "RQ_ASYNC": _env("RQ_ASYNC", "true").lower() not in ("0", "false", "no"),
        "LOG_LEVEL": _env("LOG_LEVEL", "INFO"),
        # flask-smorest / OpenAPI
        "API_TITLE": "Linli API",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "/docs",
        "OPENAPI_SWAGGER_UI_URL": _env(
            "SWAGGER_UI_URL", "https://cdn.jsdelivr.net/npm/swagger-ui-dist/"
        ),
        "JSON_AS_ASCII": False,
    }
    cfg.update(overrides or {})
    _postgres_options(cfg)
    if cfg["LINLI_ENV"] == "production":
        check_production(cfg)
    return cfg


def _postgres_options(cfg: dict) -> None:
    """PostgreSQL: pool as many connections as a process has threads, and bound every wait.

    Pool: SQLAlchemy's default keeps 5; with 8 gthread threads the 6th to 8th connections were
    opened and closed on every burst - a new server process each time (found by `make bench`).

    Waits: a request that waits on a row lock, a runaway statement or an unreachable server
    holds its thread, its pooled connection and its turn (app/admission.py) for as long as it
    waits. `lock_timeout`, `statement_timeout` (set on each connection as it opens) and libpq's
    `connect_timeout` end the wait: the request gets a 503 in the error shape, its transaction
    rolls back, the caller may retry (app.errors). 0 means no limit.
    """
    if not cfg["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        return
    options = cfg["SQLALCHEMY_ENGINE_OPTIONS"] = dict(cfg["SQLALCHEMY_ENGINE_OPTIONS"])
    options.setdefault("pool_size", _int("DB_POOL_SIZE", 10))
    options.setdefault("max_overflow", _int("DB_MAX_OVERFLOW", 10))
    # connect_args win over DATABASE_URL's query: the URL's own options are kept, and added to
    url_query = make_url(cfg["SQLALCHEMY_DATABASE_URI"]).query
    connect_args = options["connect_args"] = dict(options.get("connect_args", {}))
    connect_args.setdefault("connect_timeout", int(url_query.get(
        "connect_timeout", cfg["DB_CONNECT_TIMEOUT_SECONDS"])))
    connect_args.setdefault("options", " ".join(filter(None, [
        url_query.get("options"), f"-c lock_timeout={cfg['DB_LOCK_TIMEOUT_MS']}",
        f"-c statement_timeout={cfg['DB_STATEMENT_TIMEOUT_MS']}"])))


def check_production(cfg: dict) -> None:
    """Refuse development secrets and the mock WeChat API in production."""
    problems = []
    if cfg["JWT_SECRET_KEY"] == DEV_JWT_SECRET or len(cfg["JWT_SECRET_KEY"]) < 32:
        problems.append("JWT_SECRET_KEY is the development default or shorter than 32 characters")
    if cfg["WX_APPID"] == DEV_WX_APPID or cfg["WX_SECRET"] == DEV_WX_SECRET:
        problems.append("WX_APPID / WX_SECRET are the development defaults")
    if cfg["WX_API_BASE"] == MOCK_WX_API_BASE or "127.0.0.1" in cfg["WX_API_BASE"]:
        problems.append("WX_API_BASE points at the mock WeChat API")
    if cfg["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        problems.append("DATABASE_URL is unset (SQLite is for development only)")
    if not cfg["REDIS_URL"]:
        problems.append("REDIS_URL is unset (in-process fakeredis is for development only)")
    if problems:
        raise ConfigError("Refusing to start in production: " + "; ".join(problems))
