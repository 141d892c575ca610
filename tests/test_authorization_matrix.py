"""Nobody reads or changes another tenant's data: 404 (never 2xx), and no row moves.

Two tenants (tests/tenancy_fixtures.py) each hold one resource of every kind. The test walks
Flask's URL map for every /api/v1 route with an `<int:...>` id, fills each id from the
resource it names (`report_id` -> that tenant's report...), and calls it as every kind of
caller of the OTHER community (resident and staff of the property company, office, canteen and
care provider), both ways round. Inside one community, a resident of another household and the
staff of a second property company must not reach the resident's or the org's rows either.

A 403 is accepted only as `forbidden_role`: the caller's role may not call the route at all, which
role_required says before any lookup (so it tells nothing about the row). Every route must
still answer 404 to at least one caller of the other community.

A route whose ids cannot be mapped fails the test until it is mapped here or exempted with a
reason; a route that needs a body gets a valid one from BODIES, so that it is the tenancy check,
not input validation, that answers.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from werkzeug.routing import AnyConverter, IntegerConverter

from app.extensions import db
from app.models import (
    Booking,
    Order,
    OutboxMessage,
    OutboxStatus,
    Redemption,
    Report,
    Signup,
    WatchedElder,
)
from app.models.timebank import LedgerEntry
from app.services.activities import make_token
from tests import factories as f
from tests.booking_fixtures import local
from tests.tenancy_fixtures import RESOURCE_PARAMS, build_world, unread

# Routes whose ids do not address a tenant's resource, and why.
EXEMPT = {
    "POST /api/v1/admin/jobs/failed/<int:message_id>/requeue":
        "the deployment-wide outbox: a failed job belongs to no community (platform operators "
        "only: see test_no_org_caller_reaches_the_platform_routes)",
    "GET /api/v1/community/buildings/<int:building_id>":
        "a public directory: the household-claim picker lists any community's buildings "
        "(GET /community/buildings?community_id=) before the caller belongs anywhere",
}
# Ids that belong to one household: another household of the same community must get 404.
HOUSEHOLD_PRIVATE = {"booking_id", "order_id", "signup_id", "alarm_id", "elder_id"}
CROSS_CALLERS = ("resident", "property", "office", "canteen", "care")
ROUTE_ROLES_RE = re.compile(r"roles: (.*)")
PARAM_RE = re.compile(r"<(?:[^<>:]+:)?(\w+)>")


def _token(ids: dict) -> str:
    """A genuine check-in token for the tenant's own signup (so only the tenancy check fails)."""
    signup = db.session.get(Signup, ids["signup_id"])
    return make_token(signup_id=signup.id, activity_id=signup.activity_id,
                      user_id=signup.user_id, expires_at=datetime.now(UTC) + timedelta(hours=1))


CONTACTS = {"contacts": [{"name": "张伟", "phone": "13900000000", "relation": "儿子"}]}
# Valid bodies (a function of the addressed tenant's ids) for the id routes that take one.
BODIES = {
    "POST /api/v1/staff/household-claims/<int:claim_id>/<any(approve, reject):decision>":
        lambda ids: {"note": "同意"},
    "POST /api/v1/reports/<int:report_id>/feedback": lambda ids: {"fixed": True, "rating": 5},
    "POST /api/v1/tickets/<int:ticket_id>/transitions": lambda ids: {"action": "accept"},
    "POST /api/v1/tickets/<int:ticket_id>/comments": lambda ids: {"body": "已安排人员处理"},
    "POST /api/v1/activities/<int:activity_id>/signups": lambda ids: {"party_size": 1},
    "PATCH /api/v1/staff/activities/<int:activity_id>":
        lambda ids: {"title": "改过名的活动", "capacity": 20},
    "POST /api/v1/staff/activities/<int:activity_id>/cancel": lambda ids: {"reason": "天气原因"},
    "POST /api/v1/staff/activities/<int:activity_id>/checkins":
        lambda ids: {"token": _token(ids), "nonce": "scan-nonce-0001"},
    "POST /api/v1/staff/activities/<int:activity_id>/checkouts":
        lambda ids: {"token": _token(ids), "nonce": "scan-nonce-0002"},
    "POST /api/v1/staff/activities/<int:activity_id>/signups/<int:signup_id>/attendance":
        lambda ids: {"action": "check_in"},
    "POST /api/v1/staff/timebank/redemptions/<int:redemption_id>/fulfil":
        lambda ids: {"note": "已领取"},
    "POST /api/v1/staff/timebank/redemptions/<int:redemption_id>/cancel":
        lambda ids: {"reason": "库存不足"},
    "PATCH /api/v1/staff/timebank/rewards/<int:reward_id>":
        lambda ids: {"name": "改过名的奖品", "add_stock": 1},
    "POST /api/v1/bookings/<int:booking_id>/cancel": lambda ids: {"reason": "临时有事"},
    "POST /api/v1/bookings/<int:booking_id>/reschedule":
        lambda ids: {"start": local(2, 11).isoformat()},
    "POST /api/v1/staff/bookings/<int:booking_id>/transitions":
        lambda ids: {"action": "no_show"},
    "POST /api/v1/staff/services/<int:service_id>/exceptions":
        lambda ids: {"date": local(6).date().isoformat(), "kind": "closed"},
    "POST /api/v1/staff/services/<int:service_id>/slots":
        lambda ids: {"start": local(3, 10).isoformat(), "blocked": True},
    "POST /api/v1/staff/alarms/<int:alarm_id>/transitions":
        lambda ids: {"action": "acknowledge"},
    "PATCH /api/v1/staff/watched-elders/<int:elder_id>": lambda ids: {"name": "改过名的老人"},
    "PUT /api/v1/staff/watched-elders/<int:elder_id>/contacts": lambda ids: CONTACTS,
    "PATCH /api/v1/staff/devices/<int:device_id>": lambda ids: {"is_active": False},
    "PATCH /api/v1/alarms/elders/<int:elder_id>": lambda ids: {"at_home": False},
    "PUT /api/v1/alarms/elders/<int:elder_id>/contacts": lambda ids: CONTACTS,
    "POST /api/v1/canteen/menus/<int:menu_id>/items":
        lambda ids: {"dish_id": ids["dish_id"], "portions": 5},
    "PATCH /api/v1/canteen/dishes/<int:dish_id>": lambda ids: {"price": 1200},
    "POST /api/v1/canteen/orders/<int:order_id>/cancel": lambda ids: {"note": "不要了"},
    "POST /api/v1/canteen/orders/<int:order_id>/transitions": lambda ids: {"action": "accept"},
    "POST /api/v1/canteen/deliveries/<int:order_id>/location":
        lambda ids: {"lat": 31.1916, "lng": 121.4451},
}


# --- the URL map ------------------------------------------------------------------------------


def id_routes(app) -> list[tuple[str, object]]:
    """(`METHOD rule`, rule) of every /api/v1 route with an integer id, sorted."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or not int_params(rule):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((f"{method} {rule.rule}", rule))
    return sorted(found, key=lambda item: item[0])


def int_params(rule) -> list[str]:
    """Names of the rule's integer parameters."""
    return [name for name, conv in rule._converters.items()
            if isinstance(conv, IntegerConverter)]


def route_roles(app, key: str, rule) -> set[str]:
    """The roles role_required declares for the route's method."""
    method = key.split(" ", 1)[0].lower()
    view = app.view_functions[rule.endpoint]
    handler = getattr(getattr(view, "view_class", None), method, view)
    found = ROUTE_ROLES_RE.match(getattr(handler, "_linli_access", ""))
    return {r.strip() for r in found.group(1).split(",")} if found else set()


def url_for_ids(rule, ids: dict) -> str:
    """The rule's path with each id from `ids` (an `any(...)` part takes its first choice)."""
    def fill(match: re.Match) -> str:
        name = match.group(1)
        conv = rule._converters[name]
        return str(sorted(conv.items)[0] if isinstance(conv, AnyConverter) else ids[name])

    return PARAM_RE.sub(fill, rule.rule)


def unmapped(app) -> list[str]:
    """Id routes that neither map onto the world's resources nor are exempt."""
    return [key for key, rule in id_routes(app)
            if key not in EXEMPT and any(p not in RESOURCE_PARAMS for p in int_params(rule))]


def routes_needing_a_body(app) -> set[str]:
    """Id routes whose OpenAPI operation has a request body."""
    paths = app.test_client().get("/openapi.json").get_json()["paths"]
    needed = set()
    for key, rule in id_routes(app):
        method, path = key.split(" ", 1)[0].lower(), PARAM_RE.sub(r"{\1}", rule.rule)
        if "requestBody" in paths.get(path, {}).get(method, {}):
            needed.add(key)
    return needed


# --- what a call did ------------------------------------------------------------------------


def snapshot() -> dict[str, str]:
    """A digest of every table's rows."""
    db.session.expire_all()
    digests = {}
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            rows = conn.execute(select(table).order_by(*table.primary_key.columns)).all()
            digests[table.name] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return digests


def changed_tables(before: dict, after: dict) -> list[str]:
    """Names of the tables whose digest differs."""
    return sorted(name for name in before if before[name] != after[name])


def call(client, key: str, rule, ids: dict, headers: dict):
    """Call the route at the addressed tenant's ids, with a valid body when it takes one."""
    method = key.split(" ", 1)[0]
    body = BODIES[key](ids) if key in BODIES else None
    return client.open(url_for_ids(rule, ids), method=method, json=body, headers=headers)


def verdict(response) -> str | None:
    """Why an answer to a caller of the wrong tenant is wrong (None: a proper 404 or 403)."""
    error = (response.get_json(silent=True) or {}).get("error") or {}
    if response.status_code == 404 and error.get("code"):
        return None
    if response.status_code == 403 and error.get("code") == "forbidden_role":
        return None  # the role itself may not call the route: said before any lookup
    return f"{response.status_code} {error.get('code') or response.get_data(as_text=True)[:80]}"


def check_route(client, key, rule, ids, callers: dict, *, need_404: bool) -> list[str]:
    """Problems when `callers` (name -> headers) call the route at `ids`."""
    before = snapshot()
    answers = {name: call(client, key, rule, ids, headers) for name, headers in callers.items()}
    problems = [f"{key} as {name}: {why}" for name, response in answers.items()
                if (why := verdict(response))]
    moved = changed_tables(before, snapshot())
    if moved:
        problems.append(f"{key}: rows changed in {moved}")
    if need_404 and not any(r.status_code == 404 for r in answers.values()):
        problems.append(f"{key}: no caller got past the role check (all 403): prove it 404s")
    return problems


# --- the tests ------------------------------------------------------------------------------


@pytest.fixture
def world(app):
    """The two tenants with one resource of every kind."""
    return build_world()


def test_every_id_route_is_mapped_or_exempt(app):
    assert unmapped(app) == []
    assert sorted(routes_needing_a_body(app) - set(BODIES) - set(EXEMPT)) == []
    assert sorted(set(BODIES) - {key for key, _ in id_routes(app)}) == []  # no stale entries


def test_an_unmapped_route_is_caught(app):
    from flask import Flask

    probe = Flask("probe")
    probe.add_url_rule("/api/v1/widgets/<int:widget_id>", "w", lambda widget_id: "x")
    assert unmapped(probe) == ["GET /api/v1/widgets/<int:widget_id>"]


@pytest.mark.parametrize("owner, intruder", [("a", "b"), ("b", "a")])
def test_no_caller_of_another_community_reads_or_changes_anything(app, client, world, owner,
                                                                  intruder):
    target, other = getattr(world, owner), getattr(world, intruder)
    callers = {name: other.headers(name) for name in CROSS_CALLERS}
    problems = []
    for key, rule in id_routes(app):
        if key not in EXEMPT:
            problems += check_route(client, key, rule, target.ids, callers, need_404=True)
    assert not problems, "\n".join(problems)


def test_the_owners_do_reach_every_resource_the_others_cannot(app, client, world):
    # The control: each GET id route finds the resource for one of its own tenant's callers,
    # so the 404s above come from the tenancy checks, not from ids that point nowhere.
    side = world.a
    callers = {name: side.headers(name) for name in CROSS_CALLERS}
    missed = []
    for key, rule in id_routes(app):
        if key.startswith("GET ") and key not in EXEMPT:
            found = [name for name, headers in callers.items()
                     if call(client, key, rule, side.ids, headers).status_code in (200, 409)]
            if not found:
                missed.append(key)
    assert missed == []


def test_another_household_and_another_property_company_get_404(app, client, world):
    side = world.a
    problems = []
    for key, rule in id_routes(app):
        if key in EXEMPT:
            continue
        roles = route_roles(app, key, rule)
        if "resident" in roles and HOUSEHOLD_PRIVATE & set(int_params(rule)):
            problems += check_route(client, key, rule, side.ids,
                                    {"neighbour": side.headers("neighbour")}, need_404=True)
        elif "resident" not in roles:
            problems += check_route(client, key, rule, side.ids,
                                    {"prop2": side.headers("prop2")}, need_404=False)
    assert not problems, "\n".join(problems)


def test_no_org_caller_reaches_the_platform_routes(app, client, world):
    # The failed-jobs routes are exempt above (no tenant owns an outbox row), so they are checked
    # here: every caller of either community, the office's `admin` included, gets 403 and
    # changes nothing; only a platform operator gets through.
    stuck = OutboxMessage(job="routing.route_report", args={"report_id": world.a.ids["report_id"]},
                          queue="default", status=OutboxStatus.FAILED, attempts=5,
                          last_error="boom")
    db.session.add(stuck)
    db.session.commit()
    routes = [("GET", "/api/v1/admin/jobs/failed"),
              ("POST", f"/api/v1/admin/jobs/failed/{stuck.id}/requeue")]
    before = snapshot()
    problems = []
    for side in (world.a, world.b):
        for name in (*CROSS_CALLERS, "prop2", "neighbour"):
            for method, path in routes:
                r = client.open(path, method=method, headers=side.headers(name))
                code = (r.get_json(silent=True) or {}).get("error", {}).get("code")
                if (r.status_code, code) != (403, "forbidden_role"):
                    problems.append(f"{method} {path} as {side.name}/{name}: {r.status_code}")
    assert not problems, "\n".join(problems)
    assert changed_tables(before, snapshot()) == []
    operator = f.headers(f.platform_operator())
    assert client.get(routes[0][1], headers=operator).status_code == 200


# --- ids inside request bodies ----------------------------------------------------------------


def count(model) -> int:
    """Rows in a table."""
    return db.session.scalar(select(func.count()).select_from(model))


def post(client, side, caller: str, path: str, body: dict):
    """POST as one of the side's callers (with an Idempotency-Key, which some routes need)."""
    return client.post(path, json=body,
                       headers={**side.headers(caller), "Idempotency-Key": f"{caller}{path}"})


def test_a_resident_cannot_use_another_households_ids_in_a_body(client, world):
    a, b = world.a, world.b
    before = {m: count(m) for m in (Report, Booking, Order, Redemption)}
    r = post(client, b, "resident", "/api/v1/reports", {
        "category": "lighting", "description": "路灯坏了，晚上很黑", "building_id": b.bld.id,
        "photo_ids": [a.free_upload_id]})
    assert (r.status_code, r.get_json()["error"]["code"]) == (422, "photo_not_found")
    r = post(client, b, "resident", "/api/v1/notifications/read",
             {"ids": [a.notification_id]})
    assert r.status_code == 200 and unread(a.notification_id)
    elsewhere = {
        "/api/v1/bookings": {"service_id": a.ids["service_id"],
                             "start": local(1, 11).isoformat()},
        "/api/v1/canteen/orders": {"menu_id": a.ids["menu_id"], "fulfilment": "pickup",
                                   "items": [{"dish_id": a.ids["dish_id"], "qty": 1}]},
        "/api/v1/timebank/redemptions": {"reward_id": a.ids["reward_id"]},
    }
    for path, body in elsewhere.items():
        r = post(client, b, "resident", path, body)
        assert r.status_code == 404, (path, r.get_json())
    for path in ("/api/v1/bookings", "/api/v1/canteen/orders"):  # for someone of another home
        body = elsewhere[path] | {"for_member_id": a.people["resident"].id}
        r = post(client, a, "neighbour", path, body)
        assert r.status_code in (404, 422), (path, r.get_json())
    assert {m: count(m) for m in before} == before


def test_staff_cannot_act_on_another_communitys_people_or_menus(client, world):
    a, b = world.a, world.b
    before = {m: count(m) for m in (LedgerEntry, Order, WatchedElder)}
    attempts = [
        ("office", "/api/v1/staff/timebank/awards",
         {"user_id": a.people["resident"].id, "points": 5, "reason": "志愿服务"}),
        ("canteen", "/api/v1/canteen/counter-orders",
         {"menu_id": a.ids["menu_id"], "items": [{"dish_id": a.ids["dish_id"], "qty": 1}]}),
        ("office", "/api/v1/staff/watched-elders", {"household_id": a.home.id, "name": "老人"}),
    ]
    for caller, path, body in attempts:
        r = post(client, b, caller, path, body)
        assert r.status_code in (404, 422), (path, r.get_json())
    assert {m: count(m) for m in before} == before
