"""Schemas of the caller's profile and household claims."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.models import Relation


class UserSchema(Schema):
    id = fields.Integer()
    display_name = fields.String()
    phone = fields.Method("masked_phone", metadata={"description": "masked: 138****5678"})
    birth_year = fields.Integer(allow_none=True)
    community_id = fields.Integer(allow_none=True)
    is_staff = fields.Method("staff_flag")
    created_at = fields.DateTime()

    def masked_phone(self, user):
        """Only the owner sees their number in /me; elsewhere it is masked."""
        return mask_phone(user.phone)

    def staff_flag(self, user):
        return user.username is not None


def mask_phone(phone: str | None) -> str | None:
    """138****5678."""
    if not phone or len(phone) < 7:
        return phone
    return f"{phone[:3]}****{phone[-4:]}"


class BuildingRefSchema(Schema):
    id = fields.Integer()
    number = fields.String()
    name = fields.String()


class HouseholdRefSchema(Schema):
    id = fields.Integer()
    unit = fields.String()
    room = fields.String()
    label = fields.String()
    building = fields.Nested(BuildingRefSchema)


class HouseholdClaimSchema(Schema):
    id = fields.Integer()
    relation = fields.String()
    status = fields.String(metadata={"description": "pending | approved | rejected"})
    household = fields.Nested(HouseholdRefSchema)
    decision_note = fields.String(allow_none=True)
    created_at = fields.DateTime()
    decided_at = fields.DateTime(allow_none=True)


class OrgMembershipSchema(Schema):
    org_id = fields.Integer()
    org_code = fields.Function(lambda m: m.org.code)
    org_name = fields.Function(lambda m: m.org.name)
    org_type = fields.Function(lambda m: str(m.org.type))
    role = fields.String()


class MeSchema(UserSchema):
    phone = fields.String(allow_none=True)
    households = fields.List(fields.Nested(HouseholdClaimSchema), attribute="household_links")
    memberships = fields.List(fields.Nested(OrgMembershipSchema))
    is_platform_operator = fields.Boolean(
        metadata={"description": "runs the deployment (failed jobs); no org, no community"})


class HouseholdClaimCreateSchema(Schema):
    building_id = fields.Integer(required=True)
    unit = fields.String(required=True, validate=validate.Length(min=1, max=8))
    room = fields.String(required=True, validate=validate.Length(min=1, max=8))
    relation = fields.String(required=True,
                             validate=validate.OneOf([r.value for r in Relation]))


class ProfileUpdateSchema(Schema):
    display_name = fields.String(validate=validate.Length(min=1, max=64))
    birth_year = fields.Integer(allow_none=True)
