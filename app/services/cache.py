"""A short-lived JSON cache in Redis for data many screens share; writes invalidate it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from app.extensions import redis_store

PREFIX = "linli:cache:"
log = logging.getLogger(__name__)


# --- generations: a write to a watched table makes every cached value built from it stale ---

GENERATION_PREFIX = "linli:gen:"
WATCHED: dict[type, str] = {}


def watch(model: type, generation: str) -> None:
    """Any committed write to `model` bumps `generation` (ORM objects and UPDATE statements)."""
    WATCHED[model] = generation


def cached(key: str, ttl_seconds: int, produce: Callable[[], object], *,
           depends_on: tuple[str, ...] = ()):
    """The value of `key` as built from the current generations of `depends_on`."""
    return cached_many([(key, ttl_seconds, produce, depends_on)])[0]


def cached_many(entries: list[tuple[str, int, Callable[[], object], tuple[str, ...]]]) -> list:
    """Several `cached` values in one Redis round trip; entries are (key, ttl_seconds, produce,
    depends_on).

    Each value is stored with the generations it was built from (`<generations>\n<json>`) and
    read in the same MGET as the current generations: a value built before a write is a miss.
    """
    client = redis_store.client
    names = sorted({name for *_head, depends_on in entries for name in depends_on})
    keys = [PREFIX + key for key, *_rest in entries]
    try:
        raws = client.mget([GENERATION_PREFIX + n for n in names] + keys)
    except RedisError as exc:  # the cache is an optimisation: never fail a read on it
        log.warning("cache read failed: %s", exc)
        return [produce() for _key, _ttl, produce, _deps in entries]
    numbers = dict(zip(names, raws[:len(names)], strict=True))
    values, missing = [], []
    for (_key, ttl, produce, deps), key, raw in zip(entries, keys, raws[len(names):],
                                                    strict=True):
        built_from = ".".join((numbers[n] or b"0").decode() for n in deps).encode()
        stamp, _, body = (raw or b"").partition(b"\n")
        if raw is not None and stamp == built_from:
            values.append(json.loads(body))
        else:
            values.append(produce())
            missing.append((key, ttl, built_from, values[-1]))
    if missing:
        try:
            pipe = client.pipeline(transaction=False)
            for key, ttl, built_from, value in missing:
                pipe.set(key, built_from + b"\n" + json.dumps(
                    value, ensure_ascii=False, default=str).encode(), ex=ttl)
            pipe.execute()
        except RedisError as exc:
            log.warning("cache write failed: %s", exc)
    return values


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
