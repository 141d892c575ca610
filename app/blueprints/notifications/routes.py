"""The in-app notification inbox and the resident's message preferences."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from app.blueprints.me.routes import ANY_SIGNED_IN
from app.blueprints.notifications.schemas import (
    InboxArgsSchema,
    MarkReadResultSchema,
    MarkReadSchema,
    NotificationPageSchema,
    PreferenceListSchema,
    PreferenceUpdateSchema,
)
from app.security import current_user_id, role_required
from app.services import notifications

blp = Blueprint("notifications", __name__, url_prefix="/api/v1",
                description="Notification inbox and preferences")


@blp.route("/notifications")
class Inbox(MethodView):
    @role_required(*ANY_SIGNED_IN)
    @blp.arguments(InboxArgsSchema, location="query")
    @blp.response(200, NotificationPageSchema)
    def get(self, args):
        """My notifications, newest first, with the unread count."""
        user_id = current_user_id()
        items, cursor = notifications.inbox(user_id=user_id, cursor=args["cursor"],
                                            limit=args["limit"], unread_only=args["unread"])
        return {"items": items, "next_cursor": cursor,
                "unread_count": notifications.unread_count(user_id)}


@blp.route("/notifications/read")
class MarkRead(MethodView):
    @role_required(*ANY_SIGNED_IN)
    @blp.arguments(MarkReadSchema)
    @blp.response(200, MarkReadResultSchema)
    def post(self, body):
        """Mark notifications read (ids of someone else's are ignored), or all of them."""
        user_id = current_user_id()
        marked = notifications.mark_read(user_id=user_id, ids=body["ids"],
                                         everything=body["all"])
        return {"marked": marked, "unread_count": notifications.unread_count(user_id)}


@blp.route("/me/notification-preferences")
class Preferences(MethodView):
    @role_required(*ANY_SIGNED_IN)
    @blp.response(200, PreferenceListSchema)
    def get(self):
        """Which kinds of WeChat messages I receive (the in-app inbox keeps everything)."""
        return {"items": notifications.preferences(current_user_id()), "next_cursor": None}

    @role_required(*ANY_SIGNED_IN)
    @blp.arguments(PreferenceUpdateSchema)
    @blp.response(200, PreferenceListSchema)
    def put(self, body):
        """Switch kinds of WeChat messages on or off (safety alarms stay on)."""
        items = notifications.set_preferences(current_user_id(), body["wechat"])
        return {"items": items, "next_cursor": None}
