"""Community notices: residents read them, the community office publishes and withdraws."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from app.blueprints.me.routes import ANY_SIGNED_IN
from app.blueprints.notices.schemas import (
    NoticeCreateSchema,
    NoticeListSchema,
    NoticeQuerySchema,
    NoticeSchema,
)
from app.errors import Forbidden
from app.security import current_user_id, role_required, staff_orgs
from app.services import community, notices

blp = Blueprint("notices", __name__, url_prefix="/api/v1", description="Community notices")
OFFICE = ("community_office",)
OFFICE_ROLES = ("staff", "manager", "admin")


def _office_communities() -> set[int]:
    return {m["community_id"] for m in staff_orgs(roles=OFFICE_ROLES, org_types=OFFICE)}


@blp.route("/notices")
class Notices(MethodView):
    @role_required(*ANY_SIGNED_IN)
    @blp.arguments(NoticeQuerySchema, location="query")
    @blp.response(200, NoticeListSchema)
    def get(self, args):
        """The community's current notices, pinned first."""
        community_id = community.resolve_community_id(user_id=current_user_id(),
                                                      requested=args["community_id"])
        return {"items": notices.current_notices(community_id), "next_cursor": None}


@blp.route("/staff/notices")
class StaffNotices(MethodView):
    @role_required(*OFFICE_ROLES, org_types=OFFICE)
    @blp.arguments(NoticeCreateSchema)
    @blp.response(201, NoticeSchema)
    def post(self, body):
        """Publish a notice in the office's community."""
        communities = _office_communities()
        if len(communities) != 1:
            raise Forbidden("无法确定所属社区", code="ambiguous_community")
        return notices.publish(community_id=communities.pop(), author_id=current_user_id(),
                               **body)


@blp.route("/staff/notices/<int:notice_id>/withdraw")
class WithdrawNotice(MethodView):
    @role_required(*OFFICE_ROLES, org_types=OFFICE)
    @blp.response(200, NoticeSchema)
    def post(self, notice_id):
        """Take a notice down."""
        return notices.withdraw(notice_id=notice_id, community_ids=_office_communities())
