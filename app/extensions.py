"""Extension objects, created unbound here and bound to the app in create_app."""

from __future__ import annotations

import fakeredis
import redis
from flask import Flask
from flask_jwt_extended import JWTManager
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from rq import Queue

from app.errors import render_http_exception
from app.models.base import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate(compare_type=True, render_as_batch=True)
jwt = JWTManager()


class LinliApi(Api):
    """flask-smorest's Api, rendering its errors in the house error shape."""

    def handle_http_exception(self, error):
        return render_http_exception(error)


api = LinliApi(
    spec_kwargs={
        "info": {"description": "Linli (邻里) community service API. Errors share one shape: "
                 '{"error": {"code", "message", "details"}}.'},
    }
)

QUEUE_NAMES = ("high", "default", "low")


class RedisHolder:
    """The app's Redis connection: real Redis when REDIS_URL is set, else in-process fakeredis."""

    def __init__(self) -> None:
        self.client: redis.Redis | None = None
        self.queues: dict[str, Queue] = {}
        self.is_fake = True
        self.jobs_async = False

    def init_app(self, app: Flask) -> None:
        url = app.config.get("REDIS_URL")
        if url:
            self.client = redis.Redis.from_url(
                url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30
            )
            self.is_fake = False
        else:
            self.client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
            self.is_fake = True
        # Jobs run in-process (synchronously, at enqueue) unless a real Redis serves RQ workers.
        self.jobs_async = bool(url) and app.config.get("RQ_ASYNC", True)
        self.queues = {
            name: Queue(name, connection=self.client, is_async=self.jobs_async)
            for name in QUEUE_NAMES
        }
        app.extensions["linli_redis"] = self

    def queue(self, name: str = "default") -> Queue:
        """Return the named RQ queue."""
        return self.queues[name]


redis_store = RedisHolder()
