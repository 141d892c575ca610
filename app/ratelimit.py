"""Fixed-window counters in Redis for rate limits (login failures, reports, chase-ups)."""

from __future__ import annotations

from app.errors import RateLimited
from app.extensions import redis_store

PREFIX = "linli:rl:"


def count(key: str) -> int:
    """How many hits the window for `key` holds now."""
    value = redis_store.client.get(PREFIX + key)
    return int(value or 0)


def retry_after(key: str) -> int:
    """Seconds until the window for `key` resets."""
    ttl = redis_store.client.ttl(PREFIX + key)
    return max(1, ttl if ttl and ttl > 0 else 1)


def hit(key: str, window_seconds: int) -> int:
    """Record one hit in the window for `key` and return the new count."""
    pipe = redis_store.client.pipeline()
    pipe.incr(PREFIX + key)
    pipe.expire(PREFIX + key, window_seconds, nx=True)
    value, _ = pipe.execute()
    return int(value)


def ensure_below(key: str, limit: int, message: str | None = None) -> None:
    """Raise 429 (with Retry-After) when `key` has reached `limit` hits in its window."""
    if count(key) >= limit:
        raise RateLimited(message, retry_after=retry_after(key))


def take(key: str, limit: int, window_seconds: int, message: str | None = None) -> None:
    """Count one hit and raise 429 when it goes over `limit` in the window."""
    if hit(key, window_seconds) > limit:
        raise RateLimited(message, retry_after=retry_after(key))


def clear(key: str) -> None:
    """Forget the window for `key` (e.g. after a successful login)."""
    redis_store.client.delete(PREFIX + key)
