"""The time bank API: residents' balance and redemptions, staff handling, the leaderboard."""

from __future__ import annotations

import pytest

from app.models import IdempotencyRecord
from app.models.timebank import LedgerEntry, Redemption, Reward
from tests import factories as f
from tests.activities_fixtures import (
    balance_of,
    build_place,
    count,
    fresh,
    give_points,
    ledger_sum,
    messages_to,
    reward,
)

TIMEBANK = "/api/v1/timebank"
STAFF = "/api/v1/staff/timebank"


@pytest.fixture
def place(app):
    return build_place()


def get(client, user, url, **params):
    return client.get(url, query_string=params, headers=f.headers(user))


def post(client, user, url, body=None, key: str | None = None):
    headers = f.headers(user) | ({"Idempotency-Key": key} if key else {})
    return client.post(url, json=body if body is not None else {}, headers=headers)


def redeem(client, user, prize, key: str = "redeem-1"):
    return post(client, user, f"{TIMEBANK}/redemptions", {"reward_id": prize.id}, key=key)


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


# ---- residents -----------------------------------------------------------------------------

def test_my_account_shows_the_balance_and_recent_entries(client, place):
    empty = get(client, place.li, f"{TIMEBANK}/me").get_json()
    assert (empty["balance"], empty["entries"], empty["points_per_hour"]) == (0, [], 10)
    give_points(place.li, 30)
    give_points(place.li, 5)
    body = get(client, place.li, f"{TIMEBANK}/me").get_json()
    assert (body["balance"], body["earned_total"]) == (35, 35)
    assert [(e["kind"], e["points"], e["balance_after"]) for e in body["entries"]] == [
        ("credit", 5, 35), ("credit", 30, 30)]
    page = get(client, place.li, f"{TIMEBANK}/entries", limit=1).get_json()
    assert len(page["items"]) == 1 and page["next_cursor"]


def test_rewards_of_my_community_with_their_stock(client, place):
    reward(place.comm, code="haircut", name="理发一次", stock=3)
    reward(place.comm, code="old", name="旧项目", active=False)
    reward(place.other_comm, code="far", name="别处的餐券")
    items = get(client, place.li, f"{TIMEBANK}/rewards").get_json()["items"]
    assert [(r["name"], r["stock"], r["cost"]) for r in items] == [("理发一次", 3, 20)]


def test_a_redemption_needs_an_idempotency_key_and_a_retry_replays_it(client, place):
    prize = reward(place.comm, cost=20, stock=3)
    give_points(place.li, 50)
    r = post(client, place.li, f"{TIMEBANK}/redemptions", {"reward_id": prize.id})
    assert (r.status_code, error_code(r)) == (422, "idempotency_key_required")
    assert count(Redemption) == 0
    first = redeem(client, place.li, prize)
    again = redeem(client, place.li, prize)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json() == first.get_json()
    body = first.get_json()
    assert (body["status"], body["cost"], body["reward"]["name"]) == ("requested", 20, "理发一次")
    assert [t["action"] for t in body["timeline"]] == ["request"]
    assert count(Redemption) == 1 and balance_of(place.li) == 30
    assert fresh(Reward, prize.id).stock == 2
    mine = get(client, place.li, f"{TIMEBANK}/redemptions").get_json()["items"]
    assert [m["id"] for m in mine] == [body["id"]]


def test_too_few_points_is_409_insufficient_points_and_nothing_is_written(client, place):
    prize = reward(place.comm, cost=20)
    give_points(place.li, 10)
    r = redeem(client, place.li, prize)
    assert (r.status_code, error_code(r)) == (409, "insufficient_points")
    assert r.get_json()["error"]["message"] == "积分不足"
    assert count(Redemption) == 0 and count(IdempotencyRecord) == 0
    assert balance_of(place.li) == 10 and fresh(Reward, prize.id).stock == 5


def test_an_out_of_stock_reward_is_409_and_nothing_is_written(client, place):
    prize = reward(place.comm, cost=5, stock=1)
    give_points(place.li, 50)
    give_points(place.grandma, 50)
    assert redeem(client, place.li, prize).status_code == 201
    r = redeem(client, place.grandma, prize)
    assert (r.status_code, error_code(r)) == (409, "out_of_stock")
    assert count(Redemption) == 1 and balance_of(place.grandma) == 50


def test_a_reward_of_another_community_is_404(client, place):
    prize = reward(place.other_comm, code="far")
    give_points(place.li, 50)
    r = redeem(client, place.li, prize)
    assert (r.status_code, error_code(r)) == (404, "reward_not_found")


# ---- staff ---------------------------------------------------------------------------------

def test_the_care_provider_fulfils_and_the_office_cancels_with_a_reversal(client, place):
    prize = reward(place.comm, cost=20, stock=2)
    give_points(place.li, 40)
    first = redeem(client, place.li, prize, key="r-1").get_json()
    second = redeem(client, place.li, prize, key="r-2").get_json()
    queue = get(client, place.care_staff, f"{STAFF}/redemptions", status="requested")
    assert [r["id"] for r in queue.get_json()["items"]] == [first["id"], second["id"]]
    assert queue.get_json()["items"][0]["resident"]["display_name"] == "李建国"
    r = post(client, place.care_staff, f"{STAFF}/redemptions/{first['id']}/fulfil",
             {"note": "已理发"})
    assert r.status_code == 200 and r.get_json()["status"] == "fulfilled"
    r = post(client, place.clerk, f"{STAFF}/redemptions/{second['id']}/cancel",
             {"reason": "理发师本周休假"})
    assert r.status_code == 200 and r.get_json()["status"] == "cancelled"
    assert [t["action"] for t in r.get_json()["timeline"]] == ["request", "cancel"]
    assert balance_of(place.li) == 20 == ledger_sum(place.li)
    assert fresh(Reward, prize.id).stock == 1
    kinds = [e["kind"] for e in get(client, place.li, f"{TIMEBANK}/me").get_json()["entries"]]
    assert kinds == ["reversal", "debit", "debit", "credit"]
    assert messages_to(place.li)[0]["data"]["phrase2"]["value"] == "已取消"
    r = post(client, place.clerk, f"{STAFF}/redemptions/{first['id']}/cancel", {"reason": "x"})
    assert (r.status_code, error_code(r)) == (409, "invalid_transition")
    assert count(LedgerEntry) == 4


def test_who_may_handle_redemptions(client, place):
    prize = reward(place.comm)
    give_points(place.li, 50)
    done = redeem(client, place.li, prize).get_json()
    url = f"{STAFF}/redemptions/{done['id']}/fulfil"
    assert post(client, place.other_clerk, url).status_code == 404
    assert post(client, place.prop_staff, url).status_code == 403
    assert post(client, place.li, url).status_code == 403
    assert str(fresh(Redemption, done["id"]).status) == "requested"


def test_the_office_offers_and_restocks_rewards(client, place):
    r = post(client, place.clerk, f"{STAFF}/rewards", {"code": "meal", "name": "食堂餐券",
                                                       "cost": 15, "stock": 10})
    assert r.status_code == 201, r.get_json()
    reward_id = r.get_json()["id"]
    r = client.patch(f"{STAFF}/rewards/{reward_id}", json={"add_stock": 5, "cost": 12},
                     headers=f.headers(place.clerk))
    assert (r.get_json()["stock"], r.get_json()["cost"]) == (15, 12)
    r = post(client, place.clerk, f"{STAFF}/rewards", {"code": "meal", "name": "重复",
                                                       "cost": 1, "stock": 1})
    assert (r.status_code, error_code(r)) == (422, "reward_code_taken")
    assert post(client, place.care_manager, f"{STAFF}/rewards",
                {"code": "x", "name": "x", "cost": 1, "stock": 1}).status_code == 403
    assert count(Reward) == 1


def test_awards_need_an_idempotency_key_and_count_once(client, place):
    body = {"user_id": place.li.id, "points": 6, "reason": "帮邻居搬家"}
    r = post(client, place.clerk, f"{STAFF}/awards", body)
    assert (r.status_code, error_code(r)) == (422, "idempotency_key_required")
    assert post(client, place.clerk, f"{STAFF}/awards", body, key="aw-1").status_code == 201
    assert post(client, place.clerk, f"{STAFF}/awards", body, key="aw-1").status_code == 201
    assert balance_of(place.li) == 6 and count(LedgerEntry) == 1
    r = post(client, place.clerk, f"{STAFF}/awards",
             {**body, "user_id": place.other_resident.id}, key="aw-2")
    assert r.status_code == 404 and count(LedgerEntry) == 1


# ---- leaderboard ---------------------------------------------------------------------------

def test_the_leaderboard_shows_shortened_names_to_residents_and_staff(client, place):
    give_points(place.li, 40)
    give_points(place.grandma, 25)
    give_points(place.other_resident, 90)
    for viewer in (place.grandma, place.clerk):
        body = get(client, viewer, f"{TIMEBANK}/leaderboard", period="month").get_json()
        assert [(r["rank"], r["name"], r["points"]) for r in body["items"]] == [
            (1, "李**", 40), (2, "王**", 25)]
        assert body["period"] == "month" and body["since"]
    r = get(client, place.li, f"{TIMEBANK}/leaderboard", period="decade")
    assert r.status_code == 422
