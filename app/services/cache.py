"""A short-lived JSON cache in Redis for data many screens share; writes invalidate it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from app.extensions import redis_store

PREFIX = "linli:cache:"
log = logging.getLogger(__name__)


def get_or_set(key: str, ttl_seconds: int, produce: Callable[[], object]):
    """The cached value of `key`, or `produce()` stored for `ttl_seconds` (JSON-able)."""
    try:
        raw = redis_store.client.get(PREFIX + key)
    except RedisError as exc:  # the cache is an optimisation: never fail a read on it
        log.warning("cache read of %s failed: %s", key, exc)
        return produce()
    if raw is not None:
        return json.loads(raw)
    value = produce()
    try:
        redis_store.client.set(PREFIX + key, json.dumps(value, ensure_ascii=False,
                                                        default=str), ex=ttl_seconds)
    except RedisError as exc:
        log.warning("cache write of %s failed: %s", key, exc)
    return value


def invalidate(*keys: str) -> None:
    """Forget cached keys (called after the write that changed them commits)."""
    if not keys:
        return
    try:
        redis_store.client.delete(*(PREFIX + k for k in keys))
    except RedisError as exc:
        log.warning("cache invalidation of %s failed: %s", keys, exc)


# --- generations: a write to a watched table makes every cached value built from it stale ---

GENERATION_PREFIX = "linli:gen:"
WATCHED: dict[type, str] = {}


def watch(model: type, generation: str) -> None:
    """Any committed write to `model` bumps `generation` (ORM objects and UPDATE statements)."""
    WATCHED[model] = generation


def generations(*names: str) -> str:
    """The current generation numbers of `names`, as a cache-key suffix."""
    try:
        values = redis_store.client.mget([GENERATION_PREFIX + n for n in names])
    except RedisError:
        return "nogen"
    return ".".join((v or b"0").decode() for v in values)


def cached(key: str, ttl_seconds: int, produce: Callable[[], object], *,
           depends_on: tuple[str, ...] = ()):
    """get_or_set keyed on the generations the value depends on."""
    suffix = f"@{generations(*depends_on)}" if depends_on else ""
    return get_or_set(key + suffix, ttl_seconds, produce)


def _touched(session, generation: str) -> None:
    session.info.setdefault("linli_generations", set()).add(generation)


def install_session_hooks(session_class) -> None:
    """Track writes to watched tables per transaction; bump generations after commit."""
    from sqlalchemy import event

    @event.listens_for(session_class, "after_flush")
    def _after_flush(session, _context):
        for obj in (*session.new, *session.dirty, *session.deleted):
            if type(obj) in WATCHED:
                _touched(session, WATCHED[type(obj)])

    @event.listens_for(session_class, "do_orm_execute")
    def _bulk_writes(state):
        if state.is_update or state.is_delete or state.is_insert:
            mapper = state.bind_mapper
            if mapper is not None and mapper.class_ in WATCHED:
                _touched(state.session, WATCHED[mapper.class_])

    @event.listens_for(session_class, "after_commit")
    def _after_commit(session):
        names = session.info.pop("linli_generations", set())
        if names:
            try:
                pipe = redis_store.client.pipeline()
                for name in names:
                    pipe.incr(GENERATION_PREFIX + name)
                pipe.execute()
            except RedisError as exc:
                log.warning("cache generation bump failed: %s", exc)

    @event.listens_for(session_class, "after_rollback")
    def _after_rollback(session):
        session.info.pop("linli_generations", None)
