"""Schemas of photo uploads."""

from __future__ import annotations

from flask_smorest.fields import Upload as UploadField
from marshmallow import Schema, fields

from app.services import uploads


class UploadFormSchema(Schema):
    file = UploadField(required=True,
                       metadata={"description": "a JPEG, PNG or WebP photo, at most 10 MB"})


class LocationSchema(Schema):
    lat = fields.Float()
    lng = fields.Float()


class UploadSchema(Schema):
    id = fields.Integer()
    url = fields.Function(lambda upload: uploads.public_urls(upload)["url"],
                          metadata={"description": "/media/<sha256>.jpg, at most 2048 px"})
    thumb_url = fields.Function(lambda upload: uploads.public_urls(upload)["thumb_url"],
                                metadata={"description": "/media/<sha256>.jpg, at most 400 px"})
    width = fields.Integer()
    height = fields.Integer()
    suggested_location = fields.Nested(
        LocationSchema, allow_none=True,
        metadata={"description": "from the photo's EXIF GPS (WGS-84), or null"})
    created_at = fields.DateTime()
