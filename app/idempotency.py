"""Idempotency-Key for creating POSTs: same key + same body replays the first response."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps

from flask import Response, make_response, request
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, ValidationFailed
from app.extensions import db
from app.models import IdempotencyRecord, utcnow
from app.security import current_user_id
from app.services import outbox

HEADER = "Idempotency-Key"
IN_FLIGHT_TIMEOUT = timedelta(seconds=60)


def idempotent(*, required: bool = False) -> Callable:
    """Make a creating POST safe to retry (place it under role_required)."""

    def decorator(fn: Callable) -> Callable:
        @wraps(fn)
        def wrapper(*args, **kwargs):
            key = request.headers.get(HEADER)
            if not key:
                if required:
                    raise ValidationFailed("缺少 Idempotency-Key 请求头",
                                           code="idempotency_key_required")
                return fn(*args, **kwargs)
            if len(key) > 100:
                raise ValidationFailed("Idempotency-Key 过长", code="idempotency_key_invalid")
            claim = Claim(user_id=current_user_id(), key=key, endpoint=request.path[:200],
                          request_hash=_request_hash())
            record_id, replay = _claim(claim)
            if replay is not None:
                return replay
            return _run_and_store(record_id, claim, fn, args, kwargs)

        document_header(wrapper, required)
        return wrapper

    return decorator


def document_header(view: Callable, required: bool) -> None:
    """Declare the Idempotency-Key header in the view's OpenAPI doc (flask-smorest)."""
    doc = deepcopy(getattr(view, "_apidoc", {}))
    doc.setdefault("manual_doc", {}).setdefault("parameters", []).append({
        "in": "header", "name": HEADER, "required": required,
        "description": "Same key + same body replays the first response (retries are safe).",
        "schema": {"type": "string", "minLength": 1, "maxLength": 100}})
    view._apidoc = doc


@dataclass(frozen=True)
class Claim:
    """Who used which key for what request (the columns of its IdempotencyRecord)."""

    user_id: int
    key: str
    endpoint: str
    request_hash: str


def _request_hash() -> str:
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    digest.update(request.get_data())
    return digest.hexdigest()


def _claim(claim: Claim) -> tuple[int | None, Response | None]:
    """Take the key (the new record's id) or answer from the existing one.

    The claim is written in the request's own transaction and commits with the view's work:
    one transaction less per request, and no claim outlives work that was rolled back. A second
    request with the same key waits on the unique index until the first one commits (then it is
    answered from the record) or rolls back (then it takes the key).
    """
    try:
        return _write(claim), None
    except IntegrityError:
        db.session.rollback()
    existing = db.session.scalar(select(IdempotencyRecord).where(
        IdempotencyRecord.user_id == claim.user_id, IdempotencyRecord.key == claim.key))
    if existing is None:  # deleted by a failed first attempt in the meantime
        return _claim(claim)
    if existing.request_hash != claim.request_hash:
        raise ValidationFailed("该 Idempotency-Key 已用于另一个请求",
                               code="idempotency_key_reused")
    if existing.status_code is None:
        if datetime.now(UTC) - existing.created_at < IN_FLIGHT_TIMEOUT:
            raise Conflict("相同的请求正在处理中", code="idempotency_in_flight")
        existing.created_at = datetime.now(UTC)  # abandoned: this attempt takes it over
        record_id = existing.id
        db.session.commit()
        return record_id, None
    replay = Response(existing.response_body, status=existing.status_code,
                      mimetype="application/json")
    replay.headers["Idempotent-Replayed"] = "true"
    return None, replay


def _run_and_store(record_id: int, claim: Claim, fn: Callable, args, kwargs) -> Response:
    """Run the view; keep a success response for replays, forget the key otherwise.

    The view's `outbox.commit()` is held: its work, its outbox rows and the stored answer are
    committed together, once (then the outbox jobs are enqueued).
    """
    try:
        with outbox.commit_held():
            response = make_response(fn(*args, **kwargs))
    except Exception:
        db.session.rollback()
        _forget(record_id)
        raise
    if 200 <= response.status_code < 300:
        _store(record_id, claim, response)
    else:
        db.session.rollback()
        _forget(record_id)
    return response


# Prebuilt (no statement or ORM object per request); the columns come from the parameters' names.
CLAIM = insert(IdempotencyRecord).returning(IdempotencyRecord.id)
STORE = update(IdempotencyRecord).where(IdempotencyRecord.id == bindparam("record_id"))


def _write(claim: Claim, **answer) -> int:
    """INSERT the claim (with its answer, if given) in the session's transaction: its id."""
    row = {**vars(claim), "created_at": utcnow(), **answer}
    return db.session.connection().execute(CLAIM, row).scalar_one()


def _store(record_id: int, claim: Claim, response: Response) -> None:
    """Keep the response on the claim and commit; re-create the claim if the view rolled it
    back (then its work is committed first, and a key taken meanwhile keeps that answer)."""
    answer = {"status_code": response.status_code, "response_body": response.get_data(),
              "completed_at": datetime.now(UTC)}
    stored = db.session.connection().execute(STORE, {"record_id": record_id, **answer}).rowcount
    outbox.commit()
    if stored:
        return
    try:
        _write(claim, **answer)
        db.session.commit()
    except IntegrityError:  # the key was taken in the meantime: that request's answer stands
        db.session.rollback()


def _forget(record_id: int) -> None:
    stale = db.session.get(IdempotencyRecord, record_id)
    if stale is not None:
        db.session.delete(stale)
        db.session.commit()
