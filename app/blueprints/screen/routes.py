"""The big screen: its page, the first-paint summary and the live stream (token-protected)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import Response, current_app, render_template, request, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint

from app import MAX_DATABASE_ID
from app.blueprints.screen.schemas import (
    MAX_STREAM_SECONDS,
    SCREEN_EVENT_SCHEMA,
    SCREEN_SECURITY,
    ScreenStreamArgsSchema,
    ScreenStreamHeadersSchema,
    ScreenSummarySchema,
)
from app.security import access
from app.services import screen

blp = Blueprint("screen", __name__, url_prefix="/api/v1/screen",
                description="The neighbourhood centre's big screen (token in ?token= or "
                            "X-Screen-Token)")


def screen_token() -> str | None:
    """The screen token from the header or, for EventSource, the query string."""
    return request.headers.get("X-Screen-Token") or request.args.get("token")


def screen_authenticated(fn: Callable) -> Callable:
    """Pass the token's community to the view: 401 before any parameter is looked at."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, community=screen.community_for_token(screen_token()), **kwargs)

    return wrapper


@blp.route("/summary")
class Summary(MethodView):
    @access("screen token")
    @blp.doc(security=SCREEN_SECURITY)
    @screen_authenticated
    @blp.response(200, ScreenSummarySchema)
    def get(self, community):
        """Everything the screen shows at first paint."""
        return screen.summary(community)


@blp.route("/stream")
class Stream(MethodView):
    @access("screen token")
    @blp.doc(security=SCREEN_SECURITY)
    @screen_authenticated
    @blp.arguments(ScreenStreamArgsSchema, location="query")
    @blp.arguments(ScreenStreamHeadersSchema, location="headers")
    @blp.response(200, SCREEN_EVENT_SCHEMA, content_type="text/event-stream")
    def get(self, args, headers, community):
        """Server-Sent Events: `report` for each new public report, `summary` periodically."""
        last_id = resume_after(headers["last_event_id"], args["last_event_id"])
        events = screen.stream_events(community.id, last_id=last_id,
                                      max_seconds=stream_seconds(args["max_seconds"]))
        return Response(stream_with_context(events), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def resume_after(header: str | None, last_event_id: int | None) -> int | None:
    """The report id to resume after: EventSource's Last-Event-ID header, else ?last_event_id=.

    The header is what the stream itself sent as an id; anything else in it (a non-ASCII digit
    such as "²", a number beyond any id) is ignored rather than failing the stream.
    """
    header = (header or "").strip()
    if header.isascii() and header.isdigit() and int(header) <= MAX_DATABASE_ID:
        return int(header)
    return last_event_id


def stream_seconds(requested: float | None) -> float:
    """How long one stream connection lasts: as asked, at most an hour (the browser reconnects),
    and never beyond SCREEN_STREAM_MAX_SECONDS."""
    cap = float(current_app.config.get("SCREEN_STREAM_MAX_SECONDS", MAX_STREAM_SECONDS))
    return min(requested or MAX_STREAM_SECONDS, cap)


@access("screen token")
def page():
    """The wall display page itself (1920×1080, plain HTML/JS/CSS)."""
    screen.community_for_token(screen_token())
    return render_template("screen.html")
