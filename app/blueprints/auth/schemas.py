"""Schemas of the sign-in endpoints."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.blueprints.me.schemas import UserSchema


class WxLoginSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=128),
                         metadata={"description": "the code from wx.login()"})


class StaffLoginSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=256),
                             load_only=True)


class TokenPairSchema(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String()
    expires_in = fields.Integer()
    user = fields.Nested(UserSchema)


class AccessTokenSchema(Schema):
    access_token = fields.String(required=True)
    token_type = fields.String()
    expires_in = fields.Integer()


class LogoutSchema(Schema):
    refresh_token = fields.String(load_default=None)


class PhoneCodeSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=128),
                         metadata={"description": "the code from the getPhoneNumber button"})
