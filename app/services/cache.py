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
