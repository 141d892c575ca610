"""Schemas of activities, signups, check-in codes and scans."""

from __future__ import annotations

from datetime import UTC, datetime

from marshmallow import Schema, ValidationError, fields, validate

from app.blueprints.common import page_of
from app.blueprints.me.schemas import mask_phone
from app.models.activities import AUDIENCE_TAGS, PARTICIPANT, SignupStatus
from app.pagination import PageArgsSchema
from app.services.activities import ACTIVITY_STATUS_LABELS, SIGNUP_STATUS_LABELS

ROLE_CODE = validate.And(
    validate.Regexp(r"^[a-z][a-z0-9_]{0,31}$", error="岗位编号须为小写字母开头"),
    validate.NoneOf([PARTICIPANT], error="participant 是保留编号"))


class DateOrDateTime(fields.Field):
    """`2025-06-01` (the start of that day, community time) or a full ISO 8601 datetime."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise ValidationError("须为日期或 ISO 8601 时间") from exc


# --- input ----------------------------------------------------------------------------------


class VolunteerRoleInSchema(Schema):
    code = fields.String(required=True, validate=ROLE_CODE)
    name = fields.String(required=True, validate=validate.Length(1, 60))
    capacity = fields.Integer(required=True, validate=validate.Range(1, 1000))
    hours = fields.Float(required=True, validate=validate.Range(0.25, 24),
                         metadata={"description": "credited hours (the cap when measured)"})
    credit_mode = fields.String(load_default="measured",
                                validate=validate.OneOf(["measured", "fixed"]))


class ActivityPatchSchema(Schema):
    """Every field optional; only the ones sent change."""

    title = fields.String(validate=validate.Length(1, 100))
    description = fields.String(validate=validate.Length(max=5000))
    place = fields.String(validate=validate.Length(max=200))
    starts_at = fields.DateTime()
    ends_at = fields.DateTime()
    signup_opens_at = fields.DateTime()
    signup_closes_at = fields.DateTime()
    capacity = fields.Integer(validate=validate.Range(0, 10000))
    max_party_size = fields.Integer(validate=validate.Range(1, 10))
    audience = fields.List(fields.String(validate=validate.OneOf(AUDIENCE_TAGS)),
                           validate=validate.Length(min=1))
    min_age = fields.Integer(allow_none=True, validate=validate.Range(0, 120))
    max_age = fields.Integer(allow_none=True, validate=validate.Range(0, 120))
    volunteer_roles = fields.List(fields.Nested(VolunteerRoleInSchema),
                                  validate=validate.Length(max=20))
    checkin_required = fields.Boolean()
    cover_upload_id = fields.Integer(allow_none=True)


class ActivityCreateSchema(ActivityPatchSchema):
    org_id = fields.Integer(load_default=None, metadata={"description": "default: your office"})
    title = fields.String(required=True, validate=validate.Length(1, 100))
    description = fields.String(load_default="", validate=validate.Length(max=5000))
    place = fields.String(load_default="", validate=validate.Length(max=200))
    starts_at = fields.DateTime(required=True)
    ends_at = fields.DateTime(required=True)
    signup_opens_at = fields.DateTime(load_default=None, metadata={"description": "default now"})
    signup_closes_at = fields.DateTime(load_default=None,
                                       metadata={"description": "default: the start"})
    capacity = fields.Integer(required=True, validate=validate.Range(0, 10000))
    max_party_size = fields.Integer(load_default=1, validate=validate.Range(1, 10))
    audience = fields.List(fields.String(validate=validate.OneOf(AUDIENCE_TAGS)),
                           load_default=lambda: ["all"], validate=validate.Length(min=1))
    min_age = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(0, 120))
    max_age = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(0, 120))
    volunteer_roles = fields.List(fields.Nested(VolunteerRoleInSchema), load_default=list,
                                  validate=validate.Length(max=20))
    checkin_required = fields.Boolean(load_default=True)
    cover_upload_id = fields.Integer(load_default=None, allow_none=True)


class CancelActivitySchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(1, 500))


class ActivityListArgsSchema(PageArgsSchema):
    start = DateOrDateTime(data_key="from", load_default=None,
                           metadata={"description": "date or datetime; default now"})
    audience = fields.String(load_default=None, validate=validate.OneOf(AUDIENCE_TAGS))


class SignupCreateSchema(Schema):
    party_size = fields.Integer(load_default=1, validate=validate.Range(
        min=1, error="报名人数至少 1 人"))
    role = fields.String(load_default=PARTICIPANT, validate=validate.Length(1, 32),
                         metadata={"description": "participant, or a volunteer role code"})
    member_ids = fields.List(fields.Integer(), load_default=list, validate=validate.Length(max=10),
                             metadata={"description": "household members coming along"})


class QrArgsSchema(Schema):
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "png"]))


class ScanSchema(Schema):
    token = fields.String(required=True, validate=validate.Length(1, 1000))
    nonce = fields.String(required=True, validate=validate.Length(8, 64),
                          metadata={"description": "unique per scan; a re-upload repeats it"})
    scanned_at = fields.DateTime(load_default=None,
                                 metadata={"description": "when an offline scanner scanned"})


class AttendanceSchema(Schema):
    action = fields.String(required=True, validate=validate.OneOf(["check_in", "check_out"]))
    at = fields.DateTime(load_default=None)
    note = fields.String(load_default="", validate=validate.Length(max=200))


class RosterArgsSchema(PageArgsSchema):
    status = fields.String(load_default=None, validate=validate.OneOf(
        [str(s) for s in SignupStatus]))


# --- output ---------------------------------------------------------------------------------


class ActivityCoverSchema(Schema):
    id = fields.Integer()
    url = fields.Method("get_url")
    thumb_url = fields.Method("get_thumb")

    def get_url(self, upload):
        from app.services.uploads import public_urls

        return public_urls(upload)["url"]

    def get_thumb(self, upload):
        from app.services.uploads import public_urls

        return public_urls(upload)["thumb_url"]


class VolunteerRoleSchema(Schema):
    code = fields.String()
    name = fields.String()
    capacity = fields.Integer()
    seats_left = fields.Integer()
    hours = fields.Float()
    credit_mode = fields.String()


class MySignupSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    status_label = fields.Function(lambda s: SIGNUP_STATUS_LABELS[str(s.status)])
    waitlist_position = fields.Integer(allow_none=True)
    party_size = fields.Integer()
    role = fields.String()


def signup_state(activity) -> str:
    """open | not_open | closed | cancelled, as the signup button shows it."""
    if str(activity.status) == "cancelled":
        return "cancelled"
    stamp = datetime.now(UTC)
    if stamp < activity.signup_opens_at:
        return "not_open"
    return "open" if stamp < activity.signup_closes_at else "closed"


class ActivitySchema(Schema):
    id = fields.Integer()
    title = fields.String()
    description = fields.String()
    place = fields.String()
    cover = fields.Nested(ActivityCoverSchema, allow_none=True)
    starts_at = fields.DateTime()
    ends_at = fields.DateTime()
    signup_opens_at = fields.DateTime()
    signup_closes_at = fields.DateTime()
    signup_state = fields.Function(signup_state)
    capacity = fields.Integer()
    seats_left = fields.Integer()
    waitlist_count = fields.Function(lambda a: getattr(a, "waitlist_count", 0))
    max_party_size = fields.Integer()
    audience = fields.List(fields.String())
    min_age = fields.Integer(allow_none=True)
    max_age = fields.Integer(allow_none=True)
    checkin_required = fields.Boolean()
    volunteer_roles = fields.List(fields.Nested(VolunteerRoleSchema), attribute="roles")
    status = fields.String()
    status_label = fields.Function(lambda a: ACTIVITY_STATUS_LABELS[str(a.status)])
    cancel_reason = fields.String(allow_none=True)
    my_signup = fields.Function(
        lambda a: MySignupSchema().dump(a.my_signup) if getattr(a, "my_signup", None) else None)


ActivityPageSchema = page_of(ActivitySchema, "ActivityPageSchema")


class StaffActivitySchema(ActivitySchema):
    class Meta:
        exclude = ("my_signup",)

    org_id = fields.Integer()
    seats_taken = fields.Integer()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


StaffActivityPageSchema = page_of(StaffActivitySchema, "StaffActivityPageSchema")


class ActivityRefSchema(Schema):
    id = fields.Integer()
    title = fields.String()
    place = fields.String()
    starts_at = fields.DateTime()
    ends_at = fields.DateTime()
    status = fields.String()


class SignupSchema(MySignupSchema):
    activity_id = fields.Integer()
    activity = fields.Nested(ActivityRefSchema)
    role_name = fields.Function(
        lambda s: s.volunteer_role.name if s.volunteer_role_id else "参加者")
    member_ids = fields.List(fields.Integer())
    confirmed_at = fields.DateTime(allow_none=True)
    cancelled_at = fields.DateTime(allow_none=True)
    checked_in_at = fields.DateTime(allow_none=True)
    checked_out_at = fields.DateTime(allow_none=True)
    credited_hours = fields.Function(
        lambda s: None if s.credited_minutes is None else round(s.credited_minutes / 60, 2))
    created_at = fields.DateTime()


SignupPageSchema = page_of(SignupSchema, "SignupPageSchema")


class SignupResidentSchema(Schema):
    id = fields.Integer()
    display_name = fields.String()
    phone = fields.Function(lambda u: mask_phone(u.phone))


class StaffSignupSchema(SignupSchema):
    resident = fields.Nested(SignupResidentSchema, attribute="user")
    queue_no = fields.Integer()
    cancel_source = fields.String(allow_none=True)


StaffSignupPageSchema = page_of(StaffSignupSchema, "StaffSignupPageSchema")


class QrSchema(Schema):
    signup_id = fields.Integer()
    activity_id = fields.Integer()
    token = fields.String()
    expires_at = fields.DateTime()
    png = fields.String(attribute="png_data_url",
                        metadata={"description": "data:image/png;base64,... of the QR code"})


class ScanResultSchema(Schema):
    result = fields.String(metadata={"description": "checked_in | already_checked_in | "
                                                    "checked_out | already_checked_out"})
    replayed = fields.Boolean()
    scanned_at = fields.DateTime()
    signup = fields.Nested(StaffSignupSchema)
