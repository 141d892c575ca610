"""All models, imported here so that Alembic and the app see every table."""

from app.models.accounts import (
    ClaimStatus,
    HouseholdMember,
    Membership,
    Org,
    OrgType,
    Relation,
    Role,
    User,
)
from app.models.base import Base, utcnow
from app.models.community import Building, Community, Grid, Household, MicroGrid
from app.models.idempotency import IdempotencyRecord
from app.models.notices import Notice
from app.models.notifications import Notification, NotificationPreference
from app.models.open311 import Open311Key
from app.models.outbox import OutboxMessage, OutboxStatus
from app.models.reports import (
    Report,
    ReportCategory,
    ReportEvent,
    ReportFollower,
    ReportPhoto,
    ReportStatus,
    RoutingRule,
    RoutingTarget,
    Ticket,
    TicketStatus,
)
from app.models.uploads import Upload

__all__ = [
    "Base",
    "Building",
    "ClaimStatus",
    "Community",
    "Grid",
    "Household",
    "HouseholdMember",
    "IdempotencyRecord",
    "Membership",
    "MicroGrid",
    "Open311Key",
    "Notice",
    "Notification",
    "NotificationPreference",
    "Org",
    "OrgType",
    "OutboxMessage",
    "OutboxStatus",
    "Relation",
    "Report",
    "ReportCategory",
    "ReportEvent",
    "ReportFollower",
    "ReportPhoto",
    "ReportStatus",
    "RoutingRule",
    "RoutingTarget",
    "Ticket",
    "TicketStatus",
    "Role",
    "Upload",
    "User",
    "utcnow",
]
