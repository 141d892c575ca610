"""Platform endpoints: background jobs that failed for good, and requeueing them.

The outbox belongs to the whole deployment (a job's arguments name rows of any community), so
these are for platform operators only, never for an org's `admin`, whose reach is one community.
"""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from app.blueprints.admin.schemas import FailedJobPageSchema, FailedJobSchema
from app.pagination import PageArgsSchema
from app.security import PLATFORM_OPERATOR, role_required
from app.services import outbox

blp = Blueprint("admin", __name__, url_prefix="/api/v1/admin",
                description="Platform operations (platform operators only)")


@blp.route("/jobs/failed")
class FailedJobs(MethodView):
    @role_required(PLATFORM_OPERATOR)
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, FailedJobPageSchema)
    def get(self, args):
        """Outbox jobs that exhausted their retries, with the last error."""
        items, cursor = outbox.list_failed(**args)
        return {"items": items, "next_cursor": cursor}


@blp.route("/jobs/failed/<int:message_id>/requeue")
class RequeueJob(MethodView):
    @role_required(PLATFORM_OPERATOR)
    @blp.response(200, FailedJobSchema)
    def post(self, message_id):
        """Put a failed job back on its queue with a fresh retry budget."""
        message = outbox.requeue_failed(message_id)
        message.in_failed_registry = False
        return message
