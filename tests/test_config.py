"""Configuration from the environment; production refuses development defaults."""

from __future__ import annotations

import pytest

from app.config import ConfigError, load_config

PROD = {
    "LINLI_ENV": "production",
    "JWT_SECRET_KEY": "p" * 48,
    "WX_APPID": "wx1234567890",
    "WX_SECRET": "s" * 32,
    "WX_API_BASE": "https://api.weixin.qq.com",
    "DATABASE_URL": "postgresql+psycopg://linli@db/linli",
    "REDIS_URL": "redis://cache:6379/0",
}


@pytest.fixture
def env(monkeypatch):
    for name in PROD:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def test_defaults_need_nothing_installed(env):
    env(LINLI_ENV="development")
    cfg = load_config()
    assert cfg["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert cfg["REDIS_URL"] is None
    assert cfg["WX_API_BASE"] == "inprocess://mock-wechat"


def test_production_with_real_settings_starts(env):
    env(**PROD)
    cfg = load_config()
    assert cfg["SQLALCHEMY_DATABASE_URI"] == PROD["DATABASE_URL"]


@pytest.mark.parametrize("missing, complaint", [
    ("JWT_SECRET_KEY", "JWT_SECRET_KEY"),
    ("WX_SECRET", "WX_APPID / WX_SECRET"),
    ("WX_API_BASE", "mock WeChat"),
    ("DATABASE_URL", "DATABASE_URL"),
    ("REDIS_URL", "REDIS_URL"),
])
def test_production_refuses_development_defaults(env, monkeypatch, missing, complaint):
    env(**PROD)
    monkeypatch.delenv(missing)
    with pytest.raises(ConfigError, match=complaint):
        load_config()


def test_unknown_environment_is_refused(env):
    env(LINLI_ENV="staging")
    with pytest.raises(ConfigError, match="LINLI_ENV"):
        load_config()


def test_create_app_refuses_production_with_dev_secret(env):
    from app import create_app

    env(**{**PROD, "JWT_SECRET_KEY": "short"})
    with pytest.raises(ConfigError, match="Refusing to start in production"):
        create_app()


def test_postgres_pool_holds_a_connection_per_gunicorn_thread(env, monkeypatch):
    """With 8 gthread threads a pool of SQLAlchemy's default 5 opened and closed connections on
    every burst; PostgreSQL pools 10 (+10 overflow) unless DB_POOL_* say otherwise."""
    env(LINLI_ENV="development", DATABASE_URL=PROD["DATABASE_URL"])
    monkeypatch.delenv("DB_POOL_SIZE", raising=False)
    monkeypatch.delenv("DB_MAX_OVERFLOW", raising=False)
    options = load_config()["SQLALCHEMY_ENGINE_OPTIONS"]
    assert (options["pool_size"], options["max_overflow"]) == (10, 10)
    env(DB_POOL_SIZE="4", DB_MAX_OVERFLOW="0")
    options = load_config()["SQLALCHEMY_ENGINE_OPTIONS"]
    assert (options["pool_size"], options["max_overflow"]) == (4, 0)


def test_postgres_waits_are_bounded_on_every_connection(env, monkeypatch):
    """A request stuck on a lock, a runaway statement or an unreachable server gives up (a 503
    database_busy / database_unavailable, tests/faults/test_database_timeouts.py)."""
    env(LINLI_ENV="development", DATABASE_URL=PROD["DATABASE_URL"])
    for name in ("DB_CONNECT_TIMEOUT_SECONDS", "DB_LOCK_TIMEOUT_MS", "DB_STATEMENT_TIMEOUT_MS"):
        monkeypatch.delenv(name, raising=False)
    connect = load_config()["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]
    assert connect == {"connect_timeout": 5,
                       "options": "-c lock_timeout=10000 -c statement_timeout=30000"}
    env(DB_CONNECT_TIMEOUT_SECONDS="2", DB_LOCK_TIMEOUT_MS="0", DB_STATEMENT_TIMEOUT_MS="60000")
    connect = load_config()["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]
    assert connect == {"connect_timeout": 2,
                       "options": "-c lock_timeout=0 -c statement_timeout=60000"}
    # what DATABASE_URL says itself is kept
    env(DATABASE_URL=PROD["DATABASE_URL"] + "?options=-csearch_path%3Dlinli&connect_timeout=9")
    connect = load_config()["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]
    assert connect == {"connect_timeout": 9, "options": "-csearch_path=linli "
                       "-c lock_timeout=0 -c statement_timeout=60000"}


def test_sqlite_keeps_its_own_pool(env):
    env(LINLI_ENV="development")
    options = load_config()["SQLALCHEMY_ENGINE_OPTIONS"]
    assert "pool_size" not in options and "connect_args" not in options
