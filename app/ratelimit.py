"""Fixed-window counters in Redis for rate limits (login failures, reports, chase-ups).

When Redis cannot be reached the limits fail open, with a logged warning: a resident's report
or a staff login must not fail because a counter is unavailable (the database is the source of
truth). For the few minutes of an outage the limits are simply not enforced.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from app.errors import RateLimited
from app.extensions import redis_store

PREFIX = "linli:rl:"
log = logging.getLogger(__name__)


def _unavailable(action: str, key: str, exc: RedisError) -> None:
    log.warning("rate limit %s of %s skipped, Redis unavailable (failing open): %s",
                action, key, exc)


def count(key: str) -> int:
    """How many hits the window for `key` holds now (0 when Redis is unavailable)."""
    return _count(key) or 0


def _count(key: str) -> int | None:
    """The window's hits, or None when Redis cannot tell."""
    try:
        value = redis_store.client.get(PREFIX + key)
    except RedisError as exc:
        _unavailable("check", key, exc)
        return None
    return int(value or 0)


def retry_after(key: str) -> int:
    """Seconds until the window for `key` resets."""
    try:
        ttl = redis_store.client.ttl(PREFIX + key)
    except RedisError:
        ttl = None
    return max(1, ttl if ttl and ttl > 0 else 1)


def hit(key: str, window_seconds: int) -> int:
    """Record one hit in the window for `key` and return the new count (0 if Redis is down)."""
    try:
        pipe = redis_store.client.pipeline()
        pipe.incr(PREFIX + key)
        pipe.expire(PREFIX + key, window_seconds, nx=True)
        value, _ = pipe.execute()
    except RedisError as exc:
        _unavailable("count", key, exc)
        return 0
    return int(value)


def ensure_below(key: str, limit: int, message: str | None = None) -> None:
    """Raise 429 (with Retry-After) when `key` has reached `limit` hits in its window."""
    hits = _count(key)
    if hits is not None and hits >= limit:
        raise RateLimited(message, retry_after=retry_after(key))


def take(key: str, limit: int, window_seconds: int, message: str | None = None) -> None:
    """Count one hit and raise 429 when it goes over `limit` in the window (never if unknown)."""
    if hit(key, window_seconds) > limit:
        raise RateLimited(message, retry_after=retry_after(key))


def once(key: str, window_seconds: int) -> bool:
    """Claim `key` for the window: False when it was already claimed (True if Redis is down)."""
    try:
        return bool(redis_store.client.set(PREFIX + key, b"1", nx=True, ex=window_seconds))
    except RedisError as exc:
        _unavailable("claim", key, exc)
        return True


def clear(key: str) -> None:
    """Forget the window for `key` (e.g. after a successful login)."""
    try:
        redis_store.client.delete(PREFIX + key)
    except RedisError as exc:
        _unavailable("reset", key, exc)
