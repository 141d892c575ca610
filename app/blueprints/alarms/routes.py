"""Safety alarms (安全守护): gateway ingest, the staff alarm desk and registry, the family side."""

from __future__ import annotations

from datetime import timedelta
from functools import wraps

import click
from flask import g, request
from flask.views import MethodView
from flask_smorest import Blueprint

from app.blueprints.alarms.schemas import (
    AlarmDutyRosterSchema,
    AlarmDutySchema,
    AlarmListArgsSchema,
    AlarmPageSchema,
    AlarmRuleListSchema,
    AlarmStatsArgsSchema,
    AlarmStatsSchema,
    AlarmTransitionSchema,
    EmergencyContactsSchema,
    FamilyAlarmArgsSchema,
    FamilyAlarmPageSchema,
    FamilyAlarmSchema,
    FamilyWatchedElderUpdateSchema,
    IotGatewayCreatedSchema,
    IotGatewayCreateSchema,
    IotGatewayListSchema,
    IotIngestResultSchema,
    IotIngestSchema,
    SafetyDeviceCreateSchema,
    SafetyDeviceListArgsSchema,
    SafetyDevicePageSchema,
    SafetyDeviceSchema,
    SafetyDeviceUpdateSchema,
    StaffAlarmDetailSchema,
    WatchedElderCreateSchema,
    WatchedElderListSchema,
    WatchedElderPageSchema,
    WatchedElderSchema,
    WatchedElderUpdateSchema,
)
from app.errors import ValidationFailed
from app.idempotency import idempotent
from app.pagination import PageArgsSchema
from app.security import RESIDENT, access, current_user_id, role_required, staff_orgs
from app.services import alarm_registry, alarm_rules, alarms

blp = Blueprint("alarms", __name__, url_prefix="/api/v1",
                description="Safety alarms for elders living alone (安全守护)")
OFFICE = ("community_office",)
DESK_ROLES = ("staff", "manager", "grid_worker", "admin")
REGISTRY_ROLES = ("staff", "manager", "admin")
KEY_ROLES = ("manager", "admin")
STATS_WINDOW = timedelta(days=30)


def desk_scope(roles=DESK_ROLES) -> alarms.StaffScope:
    """The communities whose alarms the caller works, from their office roles."""
    return alarms.StaffScope(user_id=current_user_id(),
                             orgs=staff_orgs(roles=roles, org_types=OFFICE))


def gateway_signed(fn):
    """Authenticate the gateway (HMAC over timestamp + raw body) before anything is parsed."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        g.alarm_gateway = alarms.authenticate_gateway(
            code=request.headers.get("X-Linli-Gateway"),
            timestamp=request.headers.get("X-Linli-Timestamp"),
            signature=request.headers.get("X-Linli-Signature"),
            body=request.get_data(cache=True))
        return fn(*args, **kwargs)

    return wrapper


# --- ingest ----------------------------------------------------------------------------------


@blp.route("/iot/events")
class IotEvents(MethodView):
    @access("IoT gateway: HMAC-SHA256 signature (X-Linli-Gateway, X-Linli-Timestamp, "
            "X-Linli-Signature)")
    @gateway_signed
    @blp.arguments(IotIngestSchema)
    @blp.response(202, IotIngestResultSchema)
    def post(self, body):
        """A gateway's batch of device events: stored at once, evaluated by a worker.

        Sign `<X-Linli-Timestamp>.<raw body>` with the gateway's secret (hex HMAC-SHA256 in
        X-Linli-Signature); requests older than 5 minutes, unsigned or wrongly signed are 401
        and store nothing. Each event is reported back as accepted, duplicate (its event_id
        was stored before) or rejected with a reason.
        """
        return alarms.ingest(gateway_id=g.alarm_gateway.id, events=body["events"])


# --- staff: the alarm desk -------------------------------------------------------------------


@blp.route("/staff/alarms")
class StaffAlarms(MethodView):
    @role_required(*DESK_ROLES, org_types=OFFICE)
    @blp.arguments(AlarmListArgsSchema, location="query")
    @blp.response(200, AlarmPageSchema)
    def get(self, args):
        """Alarms of my community, most urgent first (`status=open` for all unresolved)."""
        items, cursor = alarms.list_alarms(scope=desk_scope(), **args)
        return {"items": items, "next_cursor": cursor}


@blp.route("/staff/alarms/stats")
class StaffAlarmStats(MethodView):
    @role_required(*DESK_ROLES, org_types=OFFICE)
    @blp.arguments(AlarmStatsArgsSchema, location="query")
    @blp.response(200, AlarmStatsSchema)
    def get(self, args):
        """By kind and cause; median and p95 seconds to acknowledge/resolve; 10-minute share."""
        end = args["end"] or alarms.now()
        start = args["start"] or end - STATS_WINDOW
        if end <= start:
            raise ValidationFailed("结束时间须晚于开始时间", code="invalid_range")
        return alarms.stats(scope=desk_scope(), start=start, end=end)


@blp.route("/staff/alarms/duty")
class AlarmDutyRoster(MethodView):
    @role_required(*DESK_ROLES, org_types=OFFICE)
    @blp.response(200, AlarmDutyRosterSchema)
    def get(self):
        """Who is on alarm duty (notified first, sees full phone numbers)."""
        return {"items": alarm_registry.duty_roster(desk_scope()), "next_cursor": None}

    @role_required(*DESK_ROLES, org_types=OFFICE)
    @blp.arguments(AlarmDutySchema)
    @blp.response(200, AlarmDutyRosterSchema)
    def put(self, body):
        """Go on or off alarm duty."""
        return {"items": alarm_registry.set_on_duty(scope=desk_scope(), **body),
                "next_cursor": None}


@blp.route("/staff/alarms/<int:alarm_id>")
class StaffAlarmDetail(MethodView):
    @role_required(*DESK_ROLES, org_types=OFFICE)
    @blp.response(200, StaffAlarmDetailSchema)
    def get(self, alarm_id):
        """Elder, address, contacts, device, device events and the timeline."""
        return alarms.get_alarm(alarm_id=alarm_id, scope=desk_scope())


@blp.route("/staff/alarms/<int:alarm_id>/transitions")
class StaffAlarmTransitions(MethodView):
    @role_required(*DESK_ROLES, org_types=OFFICE)
    @blp.arguments(AlarmTransitionSchema)
    @blp.response(200, StaffAlarmDetailSchema)
    def post(self, body, alarm_id):
        """acknowledge, arrive (on site) or resolve (with a cause)."""
        return alarms.transition(alarm_id=alarm_id, scope=desk_scope(), **body)


@blp.route("/staff/alarm-rules")
class AlarmRules(MethodView):
    @role_required(*DESK_ROLES, org_types=OFFICE)
    @blp.response(200, AlarmRuleListSchema)
    def get(self):
        """The rules that raise alarms, as data."""
        return {"items": alarm_rules.active_rules(), "next_cursor": None}


# --- staff: the registry ---------------------------------------------------------------------


@blp.route("/staff/watched-elders")
class StaffElders(MethodView):
    @role_required(*DESK_ROLES, org_types=OFFICE)
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, WatchedElderPageSchema)
    def get(self, args):
        """Elders under watch, with kits and contacts."""
        items, cursor = alarm_registry.list_elders(scope=desk_scope(), **args)
        return {"items": items, "next_cursor": cursor}

    @role_required(*REGISTRY_ROLES, org_types=OFFICE)
    @idempotent()
    @blp.arguments(WatchedElderCreateSchema)
    @blp.response(201, WatchedElderSchema)
    def post(self, body):
        """Put an elder of a household under watch (vital ranges default to 50-110 / 10-28)."""
        return alarm_registry.create_elder(scope=desk_scope(REGISTRY_ROLES), **body)


@blp.route("/staff/watched-elders/<int:elder_id>")
class StaffElder(MethodView):
    @role_required(*DESK_ROLES, org_types=OFFICE)
    @blp.response(200, WatchedElderSchema)
    def get(self, elder_id):
        """One elder with kit and contacts."""
        return alarm_registry.staff_elder(elder_id, desk_scope())

    @role_required(*REGISTRY_ROLES, org_types=OFFICE)
    @blp.arguments(WatchedElderUpdateSchema)
    @blp.response(200, WatchedElderSchema)
    def patch(self, body, elder_id):
        """Change details, vital ranges, or whether the elder is at home."""
        elder = alarm_registry.staff_elder(elder_id, desk_scope(REGISTRY_ROLES))
        return alarm_registry.update_elder(elder, body)


@blp.route("/staff/watched-elders/<int:elder_id>/contacts")
class StaffElderContacts(MethodView):
    @role_required(*REGISTRY_ROLES, org_types=OFFICE)
    @blp.arguments(EmergencyContactsSchema)
    @blp.response(200, WatchedElderSchema)
    def put(self, body, elder_id):
        """Replace the ordered emergency contacts."""
        elder = alarm_registry.staff_elder(elder_id, desk_scope(REGISTRY_ROLES))
        return alarm_registry.replace_contacts(elder, body["contacts"], allowed_user_ids=None)


@blp.route("/staff/devices")
class StaffDevices(MethodView):
    @role_required(*DESK_ROLES, org_types=OFFICE)
    @blp.arguments(SafetyDeviceListArgsSchema, location="query")
    @blp.response(200, SafetyDevicePageSchema)
    def get(self, args):
        """Kit devices, by elder, household, kind, or offline (silent over 2 hours)."""
        items, cursor = alarm_registry.list_devices(scope=desk_scope(), **args)
        return {"items": items, "next_cursor": cursor}

    @role_required(*REGISTRY_ROLES, org_types=OFFICE)
    @idempotent()
    @blp.arguments(SafetyDeviceCreateSchema)
    @blp.response(201, SafetyDeviceSchema)
    def post(self, body):
        """Register a device for a watched elder (a serial only once)."""
        return alarm_registry.register_device(scope=desk_scope(REGISTRY_ROLES), **body)


@blp.route("/staff/devices/<int:device_id>")
class StaffDevice(MethodView):
    @role_required(*DESK_ROLES, org_types=OFFICE)
    @blp.response(200, SafetyDeviceSchema)
    def get(self, device_id):
        """One device and what its events last said."""
        return alarm_registry.staff_device(device_id, desk_scope())

    @role_required(*REGISTRY_ROLES, org_types=OFFICE)
    @blp.arguments(SafetyDeviceUpdateSchema)
    @blp.response(200, SafetyDeviceSchema)
    def patch(self, body, device_id):
        """Move the device to another elder, or take it out of service."""
        scope = desk_scope(REGISTRY_ROLES)
        return alarm_registry.update_device(alarm_registry.staff_device(device_id, scope),
                                            scope=scope, **body)


@blp.route("/staff/gateways")
class StaffGateways(MethodView):
    @role_required(*KEY_ROLES, org_types=OFFICE)
    @blp.response(200, IotGatewayListSchema)
    def get(self):
        """The community's gateways (their secrets are never shown again)."""
        return {"items": alarm_registry.list_gateways(desk_scope(KEY_ROLES)), "next_cursor": None}

    @role_required(*KEY_ROLES, org_types=OFFICE)
    @blp.arguments(IotGatewayCreateSchema)
    @blp.response(201, IotGatewayCreatedSchema)
    def post(self, body):
        """Create a gateway; the response carries its secret, this once only.

        No Idempotency-Key here on purpose: a replay would have to keep the secret in the
        idempotency table. A retry with the same `code` is 409 instead.
        """
        scope = desk_scope(KEY_ROLES)
        community_id = body.pop("community_id") or min(scope.community_ids, default=None)
        if not scope.covers(community_id):
            raise ValidationFailed("不在您的社区范围内", code="community_not_in_scope")
        gateway, _secret = alarm_registry.create_gateway(community_id=community_id, **body)
        return gateway  # the only response that carries the secret


# --- family ----------------------------------------------------------------------------------


@blp.route("/alarms/mine")
class MyAlarms(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(FamilyAlarmArgsSchema, location="query")
    @blp.response(200, FamilyAlarmPageSchema)
    def get(self, args):
        """Alarms about my elders (my households', or where I am an emergency contact)."""
        items, cursor = alarms.my_alarms(user_id=current_user_id(), **args)
        return {"items": items, "next_cursor": cursor}


@blp.route("/alarms/<int:alarm_id>")
class MyAlarm(MethodView):
    @role_required(RESIDENT)
    @blp.response(200, FamilyAlarmSchema)
    def get(self, alarm_id):
        """One alarm about my elder, with its steps; 404 for anyone else's."""
        return alarms.alarm_for_family(alarm_id=alarm_id, user_id=current_user_id())


@blp.route("/alarms/elders")
class MyElders(MethodView):
    @role_required(RESIDENT)
    @blp.response(200, WatchedElderListSchema)
    def get(self):
        """My elders with their safety kits and emergency contacts."""
        return {"items": alarm_registry.my_elders(current_user_id()), "next_cursor": None}


@blp.route("/alarms/elders/<int:elder_id>")
class MyElder(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(FamilyWatchedElderUpdateSchema)
    @blp.response(200, WatchedElderSchema)
    def patch(self, body, elder_id):
        """Say the elder is away (no door-idle alarms) or back home (household members)."""
        return alarm_registry.family_set_at_home(elder_id=elder_id, user_id=current_user_id(),
                                                 **body)


@blp.route("/alarms/elders/<int:elder_id>/contacts")
class MyElderContacts(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(EmergencyContactsSchema)
    @blp.response(200, WatchedElderSchema)
    def put(self, body, elder_id):
        """Replace the ordered emergency contacts (household members)."""
        return alarm_registry.family_replace_contacts(
            elder_id=elder_id, user_id=current_user_id(), contacts=body["contacts"])


# --- CLI: flask alarms ... -------------------------------------------------------------------


@blp.cli.command("create-gateway")
@click.option("--community", "community_code", required=True, help="Community code, e.g. zpq.")
@click.option("--code", default=None, help="Gateway code (default: generated).")
@click.option("--name", default="", help="A name for people.")
def create_gateway_command(community_code: str, code: str | None, name: str) -> None:
    """Create a gateway and print its secret (shown this once)."""
    gateway, secret = _cli_call(lambda: alarm_registry.create_gateway(
        community_id=_community_id(community_code), code=code, name=name))
    click.echo(f"Gateway {gateway.code} (id {gateway.id}) secret, shown once: {secret}")


@blp.cli.command("rotate-gateway-key")
@click.argument("code")
def rotate_gateway_key_command(code: str) -> None:
    """Give a gateway a new secret (the old one stops working) and print it."""
    gateway, secret = _cli_call(lambda: alarm_registry.rotate_gateway_secret(code))
    click.echo(f"Gateway {gateway.code} new secret, shown once: {secret}")


def _community_id(code: str) -> int:
    community_id = alarm_registry.community_id_by_code(code)
    if community_id is None:
        raise click.ClickException(f"no community with code {code!r}")
    return community_id


def _cli_call(fn):
    """Run a service call, turning its domain errors into a CLI error."""
    from app.errors import APIError

    try:
        return fn()
    except APIError as exc:
        raise click.ClickException(f"{exc.message} ({exc.code})") from exc
