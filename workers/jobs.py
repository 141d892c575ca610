"""The job registry: `@job("name")` marks a function the outbox may run; plus built-in jobs."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

from flask import Flask, has_app_context

from app.extensions import redis_store

JobFunction = TypeVar("JobFunction", bound=Callable[..., object])

JOBS: dict[str, Callable[..., object]] = {}
PING_KEY = "linli:ping"

_fallback_app: Flask | None = None


class UnknownJob(LookupError):
    """No function is registered under this job name."""


def job(name: str) -> Callable[[JobFunction], JobFunction]:
    """Register the decorated function as the outbox job `name`."""

    def register(func: JobFunction) -> JobFunction:
        existing = JOBS.get(name)
        if existing is not None and _qualname(existing) != _qualname(func):
            raise ValueError(f"job {name!r} is already registered to {_qualname(existing)}")
        JOBS[name] = func
        return func

    return register


def _qualname(func: Callable[..., object]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def get_job(name: str) -> Callable[..., object]:
    """The function registered as `name`; UnknownJob when there is none."""
    if name not in JOBS:
        load_job_modules()
    try:
        return JOBS[name]
    except KeyError:
        raise UnknownJob(f"no job is registered as {name!r}") from None


def load_job_modules() -> None:
    """Import every workers module, so that their @job decorators have run."""
    import workers

    for module in pkgutil.iter_modules(workers.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"workers.{module.name}")


def app_context() -> AbstractContextManager:
    """The current app context if there is one, else a context of an app built once per process."""
    global _fallback_app
    if has_app_context():
        return nullcontext()
    if _fallback_app is None:
        from app import create_app

        _fallback_app = create_app()
    return _fallback_app.app_context()


@job("ping")
def ping(value: str = "pong") -> None:
    """Append `value` to a Redis list: proof that jobs run."""
    redis_store.client.rpush(PING_KEY, value)
