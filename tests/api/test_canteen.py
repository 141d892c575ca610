"""The canteen API as the mini-program, the kitchen and the couriers use it."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import IdempotencyRecord
from app.models.canteen import CourierPosition, Dish, Menu, Order, OrderEvent, OrderItem
from tests import factories as f
from tests.canteen_fixtures import (
    TODAY,
    build_place,
    clock_fixture,  # noqa: F401 - the `clock` fixture
    count,
    dish_id,
    left,
    lines,
    order,
    walk,
)
from tests.sql_fixtures import statements

API = "/api/v1/canteen"


@pytest.fixture
def place(app, clock):
    return build_place()


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def post_order(client, user, body, key: str | None = "k-1"):
    headers = f.headers(user) | ({"Idempotency-Key": key} if key else {})
    return client.post(f"{API}/orders", json=body, headers=headers)


def body_for(place, **overrides) -> dict:
    return {"menu_id": place.menu.id, "items": lines(place, 红烧肉=1, 米饭=1),
            "fulfilment": "pickup", **overrides}


def move(client, user, order_id: int, action: str, **body):
    return client.post(f"{API}/orders/{order_id}/transitions", json={"action": action, **body},
                       headers=f.headers(user))


# ---- menus ---------------------------------------------------------------------------------


def test_residents_see_the_days_menus_with_the_names_the_mini_program_relies_on(client, place):
    order(place, items=lines(place, 红烧肉=2))
    r = client.get(f"{API}/menus", query_string={"date": "2025-06-11"},
                   headers=f.headers(place.son))
    assert r.status_code == 200
    body = r.get_json()
    [menu] = body["items"]
    assert body["date"] == "2025-06-11" and body["next_cursor"] is None
    assert (menu["id"], menu["date"], menu["meal"], menu["is_open"]) == (
        place.menu.id, "2025-06-11", "lunch", True)
    assert menu["cutoff_at"] == "2025-06-11T01:30:00+00:00"
    pork = next(i for i in menu["items"] if i["name"] == "红烧肉")
    assert {k: pork[k] for k in ("dish_id", "price", "portions_left", "tags", "sold_out")} == {
        "dish_id": dish_id(place, "红烧肉"), "price": 1500, "portions_left": 28, "tags": [],
        "sold_out": False}
    assert [b["price"] for b in pork["subsidised_prices"]] == [1200, 1050]


def test_each_community_sees_its_own_menus(client, place):
    r = client.get(f"{API}/menus", headers=f.headers(place.outsider))
    assert r.status_code == 200 and r.get_json()["items"] == []
    r = client.get(f"{API}/menus", headers=f.headers(place.cook))
    assert [m["id"] for m in r.get_json()["items"]] == [place.menu.id]
    assert client.get(f"{API}/menus", headers=f.headers(place.clerk)).status_code == 403


def test_the_menu_list_runs_the_same_sql_whatever_its_size(client, place):
    from tests.canteen_fixtures import make_menu

    headers = f.headers(place.elder)
    with statements(expired=True) as one:
        client.get(f"{API}/menus", headers=headers)
    make_menu(place, TODAY, "dinner")
    with statements(expired=True) as two:
        client.get(f"{API}/menus", headers=headers)
    assert len(one) == len(two)


def test_the_kitchen_manages_dishes_and_publishes_menus(client, place):
    headers = f.headers(place.manager)
    r = client.post(f"{API}/dishes", headers=headers, json={
        "name": "糖醋小排", "price": 1600, "portion_size": "约180克",
        "tags": ["high_protein"], "allergens": ["小麦"], "calories": 480})
    assert r.status_code == 201, r.get_json()
    dish = r.get_json()
    assert (dish["price"], dish["tags"], dish["photo_url"]) == (1600, ["high_protein"], None)
    r = client.post(f"{API}/dishes", headers=headers, json={"name": "坏菜", "price": 100,
                                                            "tags": ["spicy"]})
    assert r.status_code == 422 and "tags" in r.get_json()["error"]["details"]["fields"]
    r = client.patch(f"{API}/dishes/{dish['id']}", headers=headers, json={"price": 1700})
    assert r.get_json()["price"] == 1700
    r = client.post(f"{API}/menus", headers=headers, json={
        "date": "2025-06-12", "meal": "dinner", "cutoff": "14:00", "delivery_start": "16:30",
        "delivery_end": "18:00", "items": [{"dish_id": dish["id"], "portions": 20}]})
    assert r.status_code == 201, r.get_json()
    menu = r.get_json()
    assert menu["cutoff_at"] == "2025-06-12T06:00:00+00:00"
    assert menu["items"][0]["subsidised_prices"][0]["price"] == 1360
    r = client.post(f"{API}/menus/{menu['id']}/items", headers=headers,
                    json={"dish_id": dish_id(place, "米饭"), "portions": 80})
    assert [i["name"] for i in r.get_json()["items"]] == ["糖醋小排", "米饭"]
    r = client.post(f"{API}/menus", headers=headers, json={
        "date": "2025-06-12", "meal": "dinner", "items": [{"dish_id": dish["id"], "portions": 5}]})
    assert (r.status_code, error_code(r)) == (409, "menu_exists")
    assert count(Menu) == 2 and count(Dish) == 5
    assert client.get(f"{API}/dishes", headers=f.headers(place.courier)).status_code == 403


def test_residents_see_whom_they_may_order_for_and_the_subsidy_bands(client, place):
    r = client.get(f"{API}/diners", headers=f.headers(place.son))
    assert [(d["user_id"], d["subsidy"]) for d in r.get_json()["items"]] == [
        (place.son.id, None), (place.elder.id, "80周岁以上老人助餐补贴"),
        (place.elder90.id, "90周岁以上老人助餐补贴")]
    r = client.get(f"{API}/subsidy-rules", headers=f.headers(place.son))
    assert [(b["min_age"], b["percent_off"]) for b in r.get_json()["items"]] == [(80, 20),
                                                                                (90, 30)]


# ---- ordering ------------------------------------------------------------------------------


def test_an_order_needs_an_idempotency_key_and_a_retry_replays_it(client, place):
    r = post_order(client, place.elder, body_for(place), key=None)
    assert (r.status_code, error_code(r)) == (422, "idempotency_key_required")
    assert count(Order) == 0 and left(place, "红烧肉") == 30
    first = post_order(client, place.elder, body_for(place))
    assert first.status_code == 201, first.get_json()
    placed = first.get_json()
    assert placed["status"] == "placed" and len(placed["pickup_code"]) == 4
    assert placed["courier_location"] is None and placed["can_cancel"] is True
    assert (placed["total"], placed["standard_total"], placed["subsidy"]) == (
        1280, 1600, "80周岁以上老人助餐补贴")
    assert "allowed_actions" not in placed
    again = post_order(client, place.elder, body_for(place))
    assert again.get_json() == placed and again.headers["Idempotent-Replayed"] == "true"
    other = post_order(client, place.elder, body_for(place, note="少放盐"))
    assert (other.status_code, error_code(other)) == (422, "idempotency_key_reused")
    assert count(Order) == 1 and left(place, "红烧肉") == 29


def starts(statement: str, *verbs: str) -> bool:
    return statement.lstrip().upper().startswith(verbs)


@pytest.mark.parametrize("key", ["k-1", None])
def test_a_new_order_is_answered_as_written_and_reads_back_the_same(client, place, key):
    """Pick-up, delivery for a family member, and a walk-in at the counter: each answer is made
    from the rows just written - no SELECT after them - and is what the detail shows."""
    cases = [
        (place.elder, f"{API}/orders", body_for(place)),
        (place.son, f"{API}/orders", body_for(place, fulfilment="delivery",
                                               for_member_id=place.elder.id)),
        (place.cook, f"{API}/counter-orders", {"menu_id": place.menu.id,
                                               "items": lines(place, 米饭=1), "diner_age": 88}),
    ]
    for n, (user, url, body) in enumerate(cases):
        headers = f.headers(user) | ({"Idempotency-Key": f"{key}-{n}"} if key else {})
        if key is None and url.endswith("/orders"):
            continue  # a resident's order needs a key (tested above)
        with statements(expired=True) as seen:
            r = client.post(url, json=body, headers=headers)
        assert r.status_code == 201, r.get_json()
        placed = r.get_json()
        writes = [i for i, s in enumerate(seen) if "INSERT INTO canteen_order" in s]
        if url.endswith("/orders"):  # the menu with its items and their dishes: one SELECT
            assert not [s for s in seen if starts(s, "SELECT CANTEEN_MENU_ITEMS",
                                                  "SELECT CANTEEN_DISHES")]
        assert not [s for s in seen[writes[0]:] if starts(s, "SELECT")]
        if db.engine.dialect.name == "postgresql":  # order, items and event: one statement
            assert len(writes) == 1 and all(f"INSERT INTO {table} " in seen[writes[0]] for table
                                            in ("canteen_orders", "canteen_order_items",
                                                "canteen_order_events"))
        detail = client.get(f"{API}/orders/{placed['id']}", headers=f.headers(user))
        assert detail.get_json() == placed
        assert [t["action"] for t in placed["timeline"]] == ["place"]


def test_a_sold_out_dish_is_a_clear_409_and_nothing_is_taken(client, app, clock):
    place = build_place(portions={"清蒸鲈鱼": 1})
    r = post_order(client, place.elder, body_for(place, items=lines(place, 红烧肉=1, 清蒸鲈鱼=2)))
    assert r.status_code == 409
    assert r.get_json()["error"] == {
        "code": "sold_out", "message": "“清蒸鲈鱼”只剩 1 份",
        "details": {"dish_id": dish_id(place, "清蒸鲈鱼"), "dish": "清蒸鲈鱼",
                    "portions_left": 1, "requested": 2}}
    assert count(Order) == count(IdempotencyRecord) == 0
    assert (left(place, "红烧肉"), left(place, "清蒸鲈鱼")) == (30, 1)


def test_ordering_after_the_cutoff_is_409_order_closed(client, place, clock):
    clock.set(hour=9, minute=45)
    r = post_order(client, place.elder, body_for(place))
    assert (r.status_code, error_code(r)) == (409, "order_closed")
    assert count(Order) == 0


def test_the_order_past_the_residents_limit_is_429_and_takes_nothing(client, app, place,
                                                                    monkeypatch):
    monkeypatch.setitem(app.config, "ORDER_RATE_LIMIT", 2)
    for key in ("k-1", "k-2"):
        assert post_order(client, place.elder, body_for(place), key=key).status_code == 201
    before = (count(Order), count(OrderItem), count(OrderEvent), count(IdempotencyRecord),
              left(place, "红烧肉"), left(place, "米饭"))
    r = post_order(client, place.elder, body_for(place), key="k-3")
    assert r.status_code == 429
    error = r.get_json()["error"]
    assert (error["code"], error["message"]) == ("rate_limited", "下单太频繁，请稍后再试")
    retry_after = int(r.headers["Retry-After"])
    assert 3000 <= retry_after <= 3600 and error["details"] == {"retry_after": retry_after}
    assert (count(Order), count(OrderItem), count(OrderEvent), count(IdempotencyRecord),
            left(place, "红烧肉"), left(place, "米饭")) == before
    replay = post_order(client, place.elder, body_for(place), key="k-1")  # a retry still replays
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    other = post_order(client, place.son, body_for(place), key="k-3")  # another resident
    assert other.status_code == 201, other.get_json()
    assert count(Order) == 3 and left(place, "红烧肉") == 27


def test_the_order_limit_window_is_configurable(client, app, place, monkeypatch):
    monkeypatch.setitem(app.config, "ORDER_RATE_LIMIT", 1)
    monkeypatch.setitem(app.config, "ORDER_RATE_WINDOW_SECONDS", 60)
    assert post_order(client, place.elder, body_for(place), key="k-1").status_code == 201
    r = post_order(client, place.elder, body_for(place), key="k-2")
    assert (r.status_code, error_code(r)) == (429, "rate_limited")
    assert 1 <= int(r.headers["Retry-After"]) <= 60


def test_invalid_orders_do_not_use_up_the_limit(client, app, place, monkeypatch):
    monkeypatch.setitem(app.config, "ORDER_RATE_LIMIT", 1)
    for i in range(3):
        r = post_order(client, place.elder, body_for(place, fulfilment="drone"), key=f"bad-{i}")
        assert r.status_code == 422
    assert post_order(client, place.elder, body_for(place), key="k-1").status_code == 201


def test_the_order_limit_is_documented_as_429_with_retry_after(client):
    spec = client.get("/openapi.json").get_json()
    for path, method in (("/api/v1/canteen/orders", "post"), ("/api/v1/reports", "post"),
                         ("/api/v1/auth/staff-login", "post"), ("/api/v1/uploads", "post")):
        documented = spec["paths"][path][method]["responses"]["429"]
        assert documented["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"}, path
        assert "Retry-After" in documented["headers"], path


@pytest.mark.parametrize(("overrides", "code", "field"), [
    ({"items": [{"dish_id": 0, "qty": 1}]}, "dish_not_on_menu", "items"),
    ({"items": "红烧肉"}, "validation_error", "items"),
    ({"fulfilment": "drone"}, "validation_error", "fulfilment"),
    ({"for_member_id": -1}, "not_household_member", "for_member_id"),
    ({"fulfilment": "delivery", "address": {"household_id": -1}}, "address_outside_community",
     "address"),
])
def test_bad_orders_are_422_naming_the_field_and_write_nothing(client, place, overrides, code,
                                                              field):
    r = post_order(client, place.elder, body_for(place, **overrides))
    assert (r.status_code, error_code(r)) == (422, code), r.get_json()
    assert field in r.get_json()["error"]["details"]["fields"]
    assert count(Order) == count(OrderItem) == count(OrderEvent) == 0
    assert left(place, "红烧肉") == 30


@pytest.mark.parametrize("qty", [0, 6])
def test_a_quantity_of_zero_or_above_the_cap_is_422(client, place, qty):
    r = post_order(client, place.elder, body_for(place, items=lines(place, 红烧肉=qty)))
    assert (r.status_code, error_code(r)) == (422, "invalid_qty")
    assert r.get_json()["error"]["message"] == "每道菜可订 1 到 5 份"
    assert count(Order) == 0 and left(place, "红烧肉") == 30


def test_a_son_orders_delivery_for_his_mother_and_both_see_it(client, place):
    r = post_order(client, place.son, body_for(place, fulfilment="delivery",
                                               for_member_id=place.elder.id))
    placed = r.get_json()
    assert (placed["for_member_id"], placed["address"], placed["pickup_code"]) == (
        place.elder.id, "3号楼1单元101", None)
    for person in (place.son, place.elder):
        mine = client.get(f"{API}/orders/mine", headers=f.headers(person)).get_json()
        assert [o["id"] for o in mine["items"]] == [placed["id"]]
        detail = client.get(f"{API}/orders/{placed['id']}", headers=f.headers(person))
        assert detail.status_code == 200
        assert [t["action"] for t in detail.get_json()["timeline"]] == ["place"]
    r = client.get(f"{API}/orders/{placed['id']}", headers=f.headers(place.neighbour))
    assert (r.status_code, error_code(r)) == (404, "order_not_found")


def test_my_orders_run_the_same_sql_for_two_orders_or_ten(client, place):
    headers = f.headers(place.elder)
    for _ in range(2):
        order(place)
    with statements(expired=True) as few:
        r = client.get(f"{API}/orders/mine", headers=headers)
    assert len(r.get_json()["items"]) == 2
    for _ in range(8):
        order(place)
    with statements(expired=True) as many:
        r = client.get(f"{API}/orders/mine", query_string={"limit": 20}, headers=headers)
    assert len(r.get_json()["items"]) == 10 and len(few) == len(many)


def test_cancelling_returns_the_portions_to_the_menu_at_once(client, place):
    placed = order(place, items=lines(place, 红烧肉=3))
    r = client.post(f"{API}/orders/{placed.id}/cancel", headers=f.headers(place.elder))
    assert r.status_code == 200 and r.get_json()["status"] == "cancelled"
    menus = client.get(f"{API}/menus", headers=f.headers(place.elder)).get_json()["items"]
    assert next(i for i in menus[0]["items"] if i["name"] == "红烧肉")["portions_left"] == 30
    accepted = order(place)
    walk(place, accepted.id, "accept")
    r = client.post(f"{API}/orders/{accepted.id}/cancel", json={"note": "不要了"},
                    headers=f.headers(place.elder))
    assert (r.status_code, error_code(r)) == (409, "invalid_transition")
    assert left(place, "红烧肉") == 29


# ---- the kitchen and the couriers ----------------------------------------------------------


def test_the_kitchen_walks_a_delivery_and_the_resident_follows_the_courier(client, place, clock):
    placed = order(place, fulfilment="delivery")
    for action in ("accept", "start", "ready"):
        assert move(client, place.cook, placed.id, action).status_code == 200
    r = move(client, place.cook, placed.id, "pick_up")
    assert (r.status_code, error_code(r)) == (409, "invalid_transition")
    assert r.get_json()["error"]["details"]["allowed"] == ["dispatch"]
    r = move(client, place.courier, placed.id, "dispatch")
    assert r.get_json()["status"] == "out_for_delivery"
    where = f"{API}/deliveries/{placed.id}/location"
    r = client.post(where, json={"lat": 31.19, "lng": 121.445, "accuracy": 12},
                    headers=f.headers(place.courier))
    assert r.status_code == 201
    r = client.post(where, json={"lat": 31.1905, "lng": 121.445},
                    headers=f.headers(place.courier))
    assert (r.status_code, error_code(r), r.headers["Retry-After"]) == (429, "rate_limited", "5")
    r = client.post(where, json={"lat": 31.19, "lng": 121.445},
                    headers=f.headers(place.courier2))
    assert (r.status_code, error_code(r)) == (404, "order_not_found")
    r = client.post(where, json={"lat": 91, "lng": 121.445}, headers=f.headers(place.courier))
    assert r.status_code == 422
    r = client.post(where, json={"lat": 31.19, "lng": 121.445}, headers=f.headers(place.cook))
    assert r.status_code == 403
    assert count(CourierPosition) == 1
    seen = client.get(f"{API}/orders/{placed.id}", headers=f.headers(place.elder)).get_json()
    location = seen["courier_location"]
    assert (location["lat"], location["lng"], location["accuracy"]) == (31.19, 121.445, 12)
    assert location["recorded_at"] == "2025-06-11T00:00:00+00:00"
    assert 170 <= location["distance_m"] <= 190 and location["eta"] > location["recorded_at"]
    r = move(client, place.courier, placed.id, "deliver")
    assert r.get_json()["status"] == "delivered" and r.get_json()["courier_location"] is None


def test_staff_see_the_allowed_actions_and_other_orgs_see_nothing(client, place):
    placed = order(place)
    r = client.get(f"{API}/orders/{placed.id}", headers=f.headers(place.cook))
    assert r.get_json()["allowed_actions"] == ["accept", "cancel"]
    r = client.get(f"{API}/orders/{placed.id}", headers=f.headers(place.other_cook))
    assert r.status_code == 404
    assert move(client, place.clerk, placed.id, "accept").status_code == 403
    r = move(client, place.courier, placed.id, "accept")
    assert (r.status_code, error_code(r)) == (403, "forbidden_action")
    r = move(client, place.cook, placed.id, "teleport")
    assert r.status_code == 422
    assert [e.action for e in db.session.scalars(select(OrderEvent))] == ["place"]


def test_the_canteen_lists_its_orders_and_couriers_their_own(client, place):
    first, second = order(place, fulfilment="delivery"), order(place, place.son)
    walk(place, first.id, "accept", "start", "ready", "dispatch", courier_id=place.courier.id)
    r = client.get(f"{API}/orders", query_string={"date": "2025-06-11", "meal": "lunch"},
                   headers=f.headers(place.cook))
    assert [o["id"] for o in r.get_json()["items"]] == [second.id, first.id]
    r = client.get(f"{API}/orders", query_string={"mine": "true"},
                   headers=f.headers(place.courier))
    assert [o["id"] for o in r.get_json()["items"]] == [first.id]


def test_counter_orders_make_the_online_share_real(client, place, clock):
    clock.set(hour=11, minute=45)
    r = client.post(f"{API}/counter-orders", headers=f.headers(place.cook), json={
        "menu_id": place.menu.id, "items": lines(place, 红烧肉=1, 米饭=1), "diner_age": 88})
    assert r.status_code == 201, r.get_json()
    walk_in = r.get_json()
    assert (walk_in["channel"], walk_in["total"], walk_in["diner_age"]) == ("counter", 1280, 88)
    r = client.post(f"{API}/counter-orders", headers=f.headers(place.clerk), json={
        "menu_id": place.menu.id, "items": lines(place, 米饭=1)})
    assert r.status_code == 403
    r = client.post(f"{API}/counter-orders", headers=f.headers(place.cook), json={
        "menu_id": place.menu.id, "items": lines(place, 米饭=1), "fulfilment": "delivery"})
    assert r.status_code == 422
    assert count(Order) == 1


def test_the_prep_sheet_as_json_and_as_csv(client, place):
    order(place, items=lines(place, 红烧肉=2), fulfilment="delivery")
    order(place, place.neighbour, items=lines(place, 红烧肉=1), fulfilment="delivery")
    r = client.get(f"{API}/prep-sheet", query_string={"meal": "lunch"},
                   headers=f.headers(place.cook))
    sheet = r.get_json()
    assert (sheet["date"], sheet["portions"], sheet["delivery_orders"]) == ("2025-06-11", 3, 2)
    assert [g["number"] for g in sheet["deliveries"]] == ["3", "12"]
    assert sheet["deliveries"][0]["orders"][0]["phone"] == "13800000001"
    r = client.get(f"{API}/prep-sheet", query_string={"meal": "lunch", "format": "csv",
                                                      "date": "2025-06-11"},
                   headers=f.headers(place.courier))
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert r.headers["Content-Disposition"] == 'attachment; filename="prep-2025-06-11-lunch.csv"'
    text = r.get_data(as_text=True)
    assert "红烧肉,3,0,0,3,30,27" in text and "3号楼1单元101" in text
    r = client.get(f"{API}/prep-sheet", query_string={"meal": "dinner"},
                   headers=f.headers(place.cook))
    assert (r.status_code, error_code(r)) == (404, "menu_not_found")
    r = client.get(f"{API}/prep-sheet", query_string={"meal": "lunch"},
                   headers=f.headers(place.elder))
    assert r.status_code == 403


# ---- the feed ------------------------------------------------------------------------------


def test_the_feed_pages_by_cursor_and_refuses_bad_cursors(client, place):
    headers = f.headers(place.cook)
    first = order(place)
    r = client.get(f"{API}/feed", headers=headers)
    page = r.get_json()
    [item] = page["items"]
    assert (item["order_id"], item["action"], item["order"]["pickup_code"]) == (
        first.id, "place", first.pickup_code)
    assert item["order"]["items"] == [{"dish_id": dish_id(place, "红烧肉"), "name": "红烧肉",
                                       "qty": 1}, {"dish_id": dish_id(place, "米饭"),
                                                   "name": "米饭", "qty": 1}]
    walk(place, first.id, "accept")
    r = client.get(f"{API}/feed", query_string={"cursor": page["next_cursor"]}, headers=headers)
    assert [e["action"] for e in r.get_json()["items"]] == ["accept"]
    r = client.get(f"{API}/feed", query_string={"cursor": "%%%"}, headers=headers)
    assert (r.status_code, error_code(r)) == (422, "invalid_cursor")
    future = "WzAsOTk5OTld"  # [0, 99999]
    r = client.get(f"{API}/feed", query_string={"cursor": future}, headers=headers)
    assert (r.status_code, error_code(r)) == (422, "cursor_from_future")
    r = client.get(f"{API}/feed", query_string={"limit": 101}, headers=headers)
    assert r.status_code == 422
    assert client.get(f"{API}/feed", headers=f.headers(place.elder)).status_code == 403


def test_the_feed_runs_the_same_sql_for_one_event_or_many(client, place):
    headers = f.headers(place.cook)
    order(place)
    with statements(expired=True) as few:
        client.get(f"{API}/feed", headers=headers)
    for person in (place.son, place.elder90, place.neighbour):
        walk(place, order(place, person).id, "accept", "start")
    with statements(expired=True) as many:
        r = client.get(f"{API}/feed", headers=headers)
    assert len(r.get_json()["items"]) == 10 and len(few) == len(many)


# ---- insights ------------------------------------------------------------------------------


def test_insights_for_me_my_family_and_the_kitchen(client, place):
    order(place, items=lines(place, 清蒸鲈鱼=1, 米饭=1))
    r = client.get(f"{API}/insights/me", query_string={"member_id": place.elder.id},
                   headers=f.headers(place.son))
    seen = r.get_json()
    assert (seen["meals"], seen["avg_calories"], seen["end"]) == (1, 490, "2025-06-11")
    r = client.get(f"{API}/insights/me", query_string={"member_id": place.elder.id},
                   headers=f.headers(place.neighbour))
    assert (r.status_code, error_code(r)) == (404, "member_not_found")
    r = client.get(f"{API}/insights", query_string={"days": 7}, headers=f.headers(place.manager))
    kitchen = r.get_json()
    assert kitchen["popularity"][0]["name"] in ("清蒸鲈鱼", "米饭")
    assert kitchen["channels"][-1] == {"date": "2025-06-11", "online": 1, "counter": 0,
                                       "online_share": 1.0}
    assert kitchen["forecast_date"] == "2025-06-12"
    assert client.get(f"{API}/insights", headers=f.headers(place.courier)).status_code == 403
    r = client.get(f"{API}/insights", query_string={"days": 0}, headers=f.headers(place.cook))
    assert r.status_code == 422


# ---- concurrency (PostgreSQL) --------------------------------------------------------------


def together(app, calls):
    """Run (method, url, kwargs) requests from threads released together; (status, json)."""
    barrier, results = threading.Barrier(len(calls)), [None] * len(calls)

    def run(i, call):
        with app.app_context():
            client = app.test_client()
            barrier.wait()
            try:
                r = client.open(call[1], method=call[0], **call[2])
                results[i] = (r.status_code, r.get_json())
            except Exception as exc:  # noqa: BLE001 - reported by the assertions
                results[i] = ("exception", repr(exc))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


@pytest.mark.postgres
@pytest.mark.concurrency
def test_200_concurrent_orders_sell_exactly_the_portions_there_are(app, clock, monkeypatch):
    monkeypatch.setitem(app.config, "ORDER_RATE_LIMIT", 1000)  # 50 orders per resident here
    place = build_place(portions={"红烧肉": 30, "清蒸鲈鱼": 20, "米饭": 1000})
    people = [place.elder, place.son, place.elder90, place.neighbour]
    tokens = {p.id: f.headers(p) for p in people}
    calls = []
    for i in range(200):
        wanted = {"红烧肉": 1 + i % 3} | ({"米饭": 1} if i % 2 else {}) | (
            {"清蒸鲈鱼": 1} if i % 5 == 0 else {})
        person = people[i % 4]
        calls.append(("POST", f"{API}/orders", {
            "json": body_for(place, items=lines(place, **wanted)),
            "headers": tokens[person.id] | {"Idempotency-Key": f"load-{i}"}}))
    results = together(app, calls)
    statuses = [status for status, _ in results]
    assert set(statuses) <= {201, 409}, [r for r in results if r[0] not in (201, 409)][:3]
    assert {body["error"]["code"] for status, body in results if status == 409} == {"sold_out"}
    db.session.expire_all()
    sold = dict(db.session.execute(select(OrderItem.dish_id, db.func.sum(OrderItem.qty))
                                   .group_by(OrderItem.dish_id)).all())
    totals = {"红烧肉": 30, "清蒸鲈鱼": 20, "米饭": 1000}
    for name, total in totals.items():
        assert left(place, name) >= 0
        assert sold.get(dish_id(place, name), 0) + left(place, name) == total, name
    assert statuses.count(201) == count(Order) > 0 and statuses.count(409) > 0
    assert sold[dish_id(place, "红烧肉")] >= 28  # at most 2 left: every rejected order wanted 1..3
    assert count(OrderEvent) == count(Order)


@pytest.mark.postgres
@pytest.mark.concurrency
def test_the_same_idempotency_key_twenty_times_at_once_makes_one_order(app, place):
    headers = f.headers(place.elder) | {"Idempotency-Key": "tap-tap-tap"}
    calls = [("POST", f"{API}/orders", {"json": body_for(place), "headers": headers})] * 20
    results = together(app, calls)
    assert {status for status, _ in results} <= {201, 409}, results[:3]
    assert {body["error"]["code"] for status, body in results if status == 409} <= {
        "idempotency_in_flight"}
    assert count(Order) == 1 and left(place, "红烧肉") == 29
    order_id = db.session.scalar(select(Order.id))
    assert {body["id"] for status, body in results if status == 201} == {order_id}
