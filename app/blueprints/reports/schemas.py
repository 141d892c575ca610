"""Schemas of categories, reports and their timeline as residents see them."""

from __future__ import annotations

from marshmallow import Schema, fields, validate, validates_schema

from app.blueprints.common import page_of
from app.pagination import PageArgsSchema
from app.services.labels import REPORT_STATUS_LABELS, event_label


class CategorySchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String(metadata={"description": "Chinese name"})
    name_en = fields.String()
    description = fields.String()
    sla_hours = fields.Integer()
    photo_required = fields.Boolean()
    is_private = fields.Boolean()
    extra_fields = fields.List(fields.Dict())


class CategoryListSchema(Schema):
    items = fields.List(fields.Nested(CategorySchema))
    next_cursor = fields.String(allow_none=True)


class PhotoSchema(Schema):
    id = fields.Integer(attribute="upload_id")
    kind = fields.String()
    url = fields.Method("get_url")
    thumb_url = fields.Method("get_thumb")

    def get_url(self, photo):
        from app.services.uploads import public_urls

        return public_urls(photo.upload)["url"]

    def get_thumb(self, photo):
        from app.services.uploads import public_urls

        return public_urls(photo.upload)["thumb_url"]


class TimelineEntrySchema(Schema):
    id = fields.Integer()
    action = fields.String()
    label = fields.Function(event_label)
    from_status = fields.String(allow_none=True)
    to_status = fields.String(allow_none=True)
    note = fields.String()
    org = fields.Function(lambda e: e.org.name if e.org_id else None)
    ticket_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()


class HandlerSchema(Schema):
    ticket_id = fields.Integer(attribute="id")
    org = fields.Function(lambda t: t.org.name)
    org_code = fields.Function(lambda t: t.org.code)
    status = fields.String()
    expected_at = fields.DateTime()


# Nested dumps' schemas, built once (building one per dump showed up in the profile).
PHOTOS = PhotoSchema(many=True)
TIMELINE = TimelineEntrySchema(many=True)
HANDLERS = HandlerSchema(many=True)


class ReportSummarySchema(Schema):
    id = fields.Integer()
    category = fields.Function(lambda r: r.category.code)
    category_name = fields.Function(lambda r: r.category.name)
    description = fields.String()
    status = fields.String()
    status_label = fields.Function(lambda r: REPORT_STATUS_LABELS[str(r.status)])
    building_id = fields.Integer(allow_none=True)
    lat = fields.Float(allow_none=True)
    lng = fields.Float(allow_none=True)
    location_text = fields.String()
    photos = fields.Method("report_photos")
    created_at = fields.DateTime()
    updated_at = fields.DateTime()

    def report_photos(self, report):
        return PHOTOS.dump([p for p in report.photos if p.kind == "report"])


class ReportSchema(ReportSummarySchema):
    after_photos = fields.Method("get_after_photos")
    timeline = fields.Method("public_timeline")
    handlers = fields.Method("get_handlers")
    duplicate_of_id = fields.Integer(allow_none=True)
    rejected_reason = fields.String(allow_none=True)
    fixed = fields.Boolean(allow_none=True)
    rating = fields.Integer(allow_none=True)
    feedback_comment = fields.String(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)

    def get_after_photos(self, report):
        return PHOTOS.dump([p for p in report.photos if p.kind == "after"])

    def public_timeline(self, report):
        return TIMELINE.dump([e for e in report.events if e.public])

    def get_handlers(self, report):
        shown = [t for t in report.tickets if str(t.status) not in ("transferred",)]
        return HANDLERS.dump(shown)


ReportPageSchema = page_of(ReportSummarySchema, "ReportPageSchema")


class ReportCreateSchema(Schema):
    category = fields.String(required=True, validate=validate.Length(min=1, max=40))
    description = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    photo_ids = fields.List(fields.Integer(), load_default=list,
                            validate=validate.Length(max=9, error="最多上传 9 张照片"))
    building_id = fields.Integer(load_default=None)
    lat = fields.Float(load_default=None, validate=validate.Range(-90, 90))
    lng = fields.Float(load_default=None, validate=validate.Range(-180, 180))
    location_text = fields.String(load_default="", validate=validate.Length(max=200))
    extra = fields.Dict(load_default=dict)

    @validates_schema
    def lat_and_lng_together(self, data, **_kwargs):
        from marshmallow import ValidationError

        if (data.get("lat") is None) != (data.get("lng") is None):
            raise ValidationError("lat 与 lng 须同时提供", field_name="lat")


class NearbyArgsSchema(Schema):
    category = fields.String(required=True)
    lat = fields.Float(load_default=None, validate=validate.Range(-90, 90))
    lng = fields.Float(load_default=None, validate=validate.Range(-180, 180))
    building_id = fields.Integer(load_default=None)


class NearbyListSchema(Schema):
    items = fields.List(fields.Nested(ReportSummarySchema))
    next_cursor = fields.String(allow_none=True)


class MyReportsArgsSchema(PageArgsSchema):
    pass


class FeedbackSchema(Schema):
    fixed = fields.Boolean(required=True)
    rating = fields.Integer(load_default=None, validate=validate.Range(1, 5))
    comment = fields.String(load_default=None, validate=validate.Length(max=500))


class UrgeResultSchema(Schema):
    id = fields.Integer()
    action = fields.String()
    created_at = fields.DateTime()
