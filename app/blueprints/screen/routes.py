"""The big screen: its page, the first-paint summary and the live stream (token-protected)."""

from __future__ import annotations

from flask import Response, render_template, request, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint

from app.security import access
from app.services import screen

blp = Blueprint("screen", __name__, url_prefix="/api/v1/screen",
                description="The neighbourhood centre's big screen (token in ?token= or "
                            "X-Screen-Token)")


def screen_token() -> str | None:
    """The screen token from the header or, for EventSource, the query string."""
    return request.headers.get("X-Screen-Token") or request.args.get("token")


@blp.route("/summary")
class Summary(MethodView):
    @access("screen token")
    @blp.response(200)
    def get(self):
        """Everything the screen shows at first paint."""
        return screen.summary(screen.community_for_token(screen_token()))


@blp.route("/stream")
class Stream(MethodView):
    @access("screen token")
    @blp.response(200, content_type="text/event-stream")
    def get(self):
        """Server-Sent Events: `report` for each new public report, `summary` periodically."""
        community = screen.community_for_token(screen_token())
        last = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
        events = screen.stream_events(
            community.id, last_id=int(last) if last and last.isdigit() else None,
            max_seconds=stream_seconds(request.args.get("max_seconds")))
        return Response(stream_with_context(events), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def stream_seconds(value: str | None) -> float:
    """How long one stream connection lasts (at most an hour; the browser reconnects)."""
    try:
        return min(max(float(value), 1.0), 3600.0) if value else 3600.0
    except ValueError:
        return 3600.0


@access("screen token")
def page():
    """The wall display page itself (1920×1080, plain HTML/JS/CSS)."""
    screen.community_for_token(screen_token())
    return render_template("screen.html")
