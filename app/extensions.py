"""Extension objects, created unbound here and bound to the app in create_app."""

from __future__ import annotations

import threading

import fakeredis
import redis
from flask import Flask, current_app
from flask_jwt_extended import JWTManager
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from rq import Queue

from app.blueprints.common import ErrorSchema
from app.errors import render_http_exception
from app.models.base import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate(compare_type=True, render_as_batch=True)
jwt = JWTManager()


class LinliApi(Api):
    """flask-smorest's Api, rendering and documenting its errors in the house error shape.

    flask-smorest documents a `default` response on every operation (and the 422 of
    @blp.arguments) with ERROR_SCHEMA, so this one assignment documents the one error shape
    everywhere.
    """

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error):
        return render_http_exception(error)


api = LinliApi(
    spec_kwargs={
        "info": {"description": "Linli (邻里) community service API. Errors share one shape: "
                 '{"error": {"code", "message", "details"}}.'},
    }
)

# Highest priority first: a worker takes the next job from the first queue that has one. Safety
# alarms and the one-tap urgent home visit are "urgent", ahead of report routing ("high"): a
# burst of reports leaves a backlog of routing jobs, and an SOS pressed then must not wait
# behind it (it waited 24.6-29.1 s behind 1,000-1,300 of them: `python -m bench.sos`).
QUEUE_NAMES = ("urgent", "high", "default", "low")
URGENT_QUEUE = QUEUE_NAMES[0]  # never waits for the web's requests (workers/yielding.py)


class RedisState:
    """One app's Redis connection and RQ queues."""

    def __init__(self, app: Flask) -> None:
        url = app.config.get("REDIS_URL")
        if url:
            # A blocking pool: a burst of concurrent requests waits briefly for a connection
            # instead of failing at once when the pool is exhausted.
            pool = redis.BlockingConnectionPool.from_url(
                url, max_connections=app.config.get("REDIS_MAX_CONNECTIONS", 200), timeout=5,
                socket_timeout=2, socket_connect_timeout=2, health_check_interval=30,
            )
            self.client: redis.Redis = redis.Redis(connection_pool=pool)
        else:
            self.client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        self.is_fake = not url
        # Jobs run in-process (synchronously, at enqueue) unless a real Redis serves RQ workers.
        self.jobs_async = bool(url) and app.config.get("RQ_ASYNC", True)
        self.queues = {
            name: Queue(name, connection=self.client, is_async=self.jobs_async)
            for name in QUEUE_NAMES
        }
        # app.services.cache: what this process last read of the shared cache, key ->
        # (monotonic time it is trusted until, JSON)
        self.local_cache: dict[str, tuple[float, bytes]] = {}
        self.local_cache_lock = threading.Lock()
        self.local_cache_epoch = 0  # moved on by every drop: a read begun before it is not kept


class RedisHolder:
    """The current app's Redis: real Redis when REDIS_URL is set, else in-process fakeredis.

    State lives on each app (app.extensions), so two apps in one process (a test app and an
    end-to-end app with asynchronous jobs) never share queues by accident.
    """

    def init_app(self, app: Flask) -> None:
        app.extensions["linli_redis"] = RedisState(app)

    @property
    def state(self) -> RedisState:
        return current_app.extensions["linli_redis"]

    @property
    def client(self) -> redis.Redis:
        return self.state.client

    @property
    def is_fake(self) -> bool:
        return self.state.is_fake

    @property
    def jobs_async(self) -> bool:
        return self.state.jobs_async

    @property
    def queues(self) -> dict[str, Queue]:
        return self.state.queues

    def queue(self, name: str = "default") -> Queue:
        """Return the named RQ queue."""
        return self.state.queues[name]


redis_store = RedisHolder()
