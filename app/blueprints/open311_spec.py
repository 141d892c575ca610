"""The Open311 GeoReport v2 facade in the OpenAPI document (its routes: app/blueprints/open311.py).

The facade is a plain Flask blueprint, not a flask-smorest one: the standard fixes its paths
(`services.json`), its form-encoded POST and its own error body (`[{"code", "description"}]`),
none of which fit the API's conventions. It is a public API all the same, so its operations are
described here by hand and added to /openapi.json (and so to Swagger UI and the fuzzer).
Only JSON exists: the paths are documented with their `.json` suffix.
"""

from __future__ import annotations

from apispec import APISpec
from marshmallow import INCLUDE, Schema, fields, validate
from werkzeug.routing import Map, Rule

from app.blueprints.common import RETRY_AFTER_HEADER
from app.blueprints.open311 import ID_RE, MAX_ID
from app.services.open311 import STATUS_FILTERS

TAG = "open311"
DATE_TIME = {"format": "date-time"}
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
PRIVATE = {"description": "contact details: stored with the request, never shown"}


class Open311ErrorSchema(Schema):
    code = fields.Integer(required=True, metadata={"description": "the HTTP status"})
    description = fields.String(required=True)


class Open311ServiceSchema(Schema):
    service_code = fields.String(required=True)
    service_name = fields.String(required=True)
    description = fields.String(required=True)
    metadata = fields.Boolean(required=True, metadata={"description": "has attributes"})
    type = fields.String(required=True, validate=validate.OneOf(["realtime", "batch",
                                                                 "blackbox"]))
    keywords = fields.String(required=True)
    group = fields.String(required=True)


class Open311AttributeSchema(Schema):
    variable = fields.Boolean(required=True)
    code = fields.String(required=True)
    datatype = fields.String(required=True)
    required = fields.Boolean(required=True)
    datatype_description = fields.String(required=True)
    order = fields.Integer(required=True)
    description = fields.String(required=True)


class Open311ServiceDefinitionSchema(Schema):
    service_code = fields.String(required=True)
    attributes = fields.List(fields.Nested(Open311AttributeSchema), required=True)


class Open311RequestSchema(Schema):
    """A service request (a report of a public category; never who reported it)."""

    service_request_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(list(STATUS_FILTERS)))
    status_notes = fields.String(required=True, allow_none=True)
    service_name = fields.String(required=True)
    service_code = fields.String(required=True)
    description = fields.String(required=True)
    agency_responsible = fields.String(required=True)
    service_notice = fields.String(required=True, allow_none=True)
    requested_datetime = fields.String(required=True, metadata=DATE_TIME)
    updated_datetime = fields.String(required=True, allow_none=True, metadata=DATE_TIME)
    expected_datetime = fields.String(required=True, allow_none=True, metadata=DATE_TIME)
    address = fields.String(required=True)
    lat = fields.Float(required=True, allow_none=True)
    long = fields.Float(required=True, allow_none=True)
    media_url = fields.String(required=True, allow_none=True)


class Open311CreatedSchema(Schema):
    service_request_id = fields.String(required=True)
    service_notice = fields.String(required=True)
    account_id = fields.String(required=True, allow_none=True)


class Open311RequestFormSchema(Schema):
    """POST requests.json, form-encoded; `attribute[CODE]` fields carry the service's
    attributes (see services/{service_code}.json)."""

    class Meta:
        unknown = INCLUDE  # the attribute[CODE] fields

    api_key = fields.String(required=True, metadata={"description": "issued per org: "
                                                                    "`flask open311-key`"})
    service_code = fields.String(required=True)
    description = fields.String(metadata={"description": "what is wrong (up to 2000 characters)"})
    lat = fields.Float(metadata={"description": "with long, or give address_string"})
    long = fields.Float()
    address_string = fields.String()
    media_url = fields.String(metadata={"description": "an http(s) photo URL, never fetched"})
    jurisdiction_id = fields.String(metadata={"description": "accepted and ignored"})
    email = fields.String(metadata=PRIVATE)
    first_name = fields.String(metadata=PRIVATE)
    last_name = fields.String(metadata=PRIVATE)
    phone = fields.String(metadata=PRIVATE)


def _query(name: str, description: str, **schema) -> dict:
    return {"in": "query", "name": name, "required": False, "description": description,
            "schema": {"type": "string", **schema}}


JURISDICTION = _query("jurisdiction_id", "accepted and ignored: one jurisdiction here")
SEARCH = [
    _query("service_request_id", "comma-separated ids; overrides every other filter"),
    _query("service_code", "comma-separated service codes"),
    _query("start_date", "ISO 8601; default: 90 days before end_date", format="date-time"),
    _query("end_date", "ISO 8601; default: now", format="date-time"),
    _query("status", "comma-separated: open, closed"),
]
ERROR = {"description": "an Open311 error: a one-element array",
         "content": {JSON: {"schema": {"type": "array", "items": Open311ErrorSchema}}}}


def _ok(description: str, schema, status: str = "200") -> dict:
    return {status: {"description": description, "content": {JSON: {"schema": schema}}}}


def _errors(*statuses: int) -> dict:
    documented = {str(status): ERROR for status in statuses}
    if "429" in documented:
        documented["429"] = {**ERROR, "description": "too many requests with the api_key this "
                                                     "hour", "headers": RETRY_AFTER_HEADER}
    return {**documented, "default": ERROR}


def _operation(summary: str, responses: dict, parameters: list, **more) -> dict:
    return {"tags": [TAG], "summary": summary, "parameters": [*parameters, JURISDICTION],
            "responses": responses, **more}


def _path_id(name: str, description: str, **schema) -> dict:
    return {"in": "path", "name": name, "required": True, "description": description,
            "schema": {"type": "string", **schema}}


def _add_path(spec: APISpec, rule: str, operations: dict, parameters: list | None = None) -> None:
    """Add one path, written as a Flask rule (the flask-smorest spec plugin reads rules)."""
    flask_rule = Rule(rule, defaults={})
    Map([flask_rule])  # binding compiles the rule, whose parameters the plugin reads
    spec.path(rule=flask_rule, operations=operations, parameters=list(parameters or []))


def document(spec: APISpec) -> None:
    """Add the Open311 operations (and their schemas) to the API's OpenAPI document."""
    request_list = {"type": "array", "items": Open311RequestSchema}
    spec.tag({"name": TAG, "description": "Open311 GeoReport v2 for city systems: JSON only; "
                                          "errors are [{\"code\", \"description\"}]"})
    _add_path(spec, "/open311/v2/services.json", {"get": _operation(
        "Every public service (report category).",
        {**_ok("the services", {"type": "array", "items": Open311ServiceSchema}), **_errors()},
        [])})
    _add_path(spec, "/open311/v2/services/<service_code>.json", {"get": _operation(
        "A service's attributes (the category's extra fields).",
        {**_ok("the definition", Open311ServiceDefinitionSchema), **_errors(404)}, [])},
        [_path_id("service_code", "a code from services.json")])
    _add_path(spec, "/open311/v2/requests.json", {
        "get": _operation("Search service requests, newest first (at most 1000).",
                          {**_ok("the requests", request_list), **_errors(400)}, SEARCH),
        "post": _operation(
            "File a service request (form-encoded, with the org's api_key).",
            {**_ok("the new request's id", {"type": "array", "items": Open311CreatedSchema},
                   "201"), **_errors(400, 403, 404, 429)},
            [], requestBody={"required": True,
                             "content": {FORM: {"schema": Open311RequestFormSchema}}})})
    _add_path(spec, "/open311/v2/requests/<service_request_id>.json", {
        "get": _operation("One service request, as a one-element array.",
                          {**_ok("the request", request_list), **_errors(404)}, [])},
        [_path_id("service_request_id", f"a request id (1..{MAX_ID})",
                  pattern=f"^{ID_RE.pattern}$")])
