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
from app.models.outbox import OutboxMessage, OutboxStatus

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
    "Org",
    "OrgType",
    "OutboxMessage",
    "OutboxStatus",
    "Relation",
    "Role",
    "User",
    "utcnow",
]
