"""Scripted mini-program journeys against a running Linli server, step by step in plain words.

    python -m miniprogram_mock.journey --base-url http://127.0.0.1:5000 [--wechat-url URL]

A daughter and her elderly father sign in through the (mock) WeChat login, claim their flat, the
community office approves; she opens home, photographs piled garbage and reports it, books a
home-care visit for her father, signs up for an activity and orders his lunch for delivery.
Property staff accept and resolve the report; the kitchen takes the order from its feed and a
courier delivers it, posting positions; finally she sees it all done on home and confirms the
fix. The first unexpected answer stops the journey with exit status 1.

Staff passwords: --staff-password, or LINLI_DEMO_PASSWORD (the demo logins of `flask seed-demo`).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx


class JourneyFailed(RuntimeError):
    """An answer the journey did not expect."""


class Api:
    """A small client that says what it does and stops on the first surprise."""

    opened: list[Api] = []

    def __init__(self, base_url: str, who: str, *, timeout: float = 10.0) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout)
        self.who = who
        self.token: str | None = None
        Api.opened.append(self)

    @classmethod
    def close_all(cls) -> None:
        """Close every client the journey opened."""
        while cls.opened:
            cls.opened.pop().close()

    def call(self, method: str, path: str, expect: int = 200, **kw) -> dict:
        headers = dict(kw.pop("headers", {}) or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        response = self.http.request(method, path, headers=headers, **kw)
        if response.status_code != expect:
            raise JourneyFailed(f"{self.who}: {method} {path} answered {response.status_code}, "
                                f"expected {expect}: {response.text[:300]}")
        return response.json() if response.content else {}

    def close(self) -> None:
        self.http.close()


def say(step: str) -> None:
    """Print one step of the journey."""
    print(f"  ✓ {step}", flush=True)


def wait_for(check, what: str, timeout: float = 15.0):
    """Poll until `check()` is truthy (jobs may run in a worker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise JourneyFailed(f"waited {timeout:.0f}s for {what}")


def jpeg() -> bytes:
    """A small photo of 'piled garbage' (a brown rectangle)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (800, 600), (110, 85, 60)).save(buf, "JPEG")
    return buf.getvalue()


def resident_login(base: str, code: str, name: str, birth_year: int) -> Api:
    """Sign in with a wx.login code, then set the profile."""
    api = Api(base, name)
    api.token = api.call("POST", "/api/v1/auth/wx-login", json={"code": code})["access_token"]
    api.call("PATCH", "/api/v1/me", json={"display_name": name, "birth_year": birth_year})
    return api


def staff_login(base: str, username: str, password: str) -> Api:
    """Sign in as a demo staff member."""
    api = Api(base, username)
    api.token = api.call("POST", "/api/v1/auth/staff-login",
                         json={"username": username, "password": password})["access_token"]
    return api


def claim_home(daughter: Api, father: Api, office: Api) -> dict:
    """Both claim the same flat; the community office approves the claims."""
    buildings = daughter.call("GET", "/api/v1/community/buildings")["items"]
    building = daughter.call("GET", f"/api/v1/community/buildings/{buildings[-1]['id']}")
    unit = building["unit_list"][-1]
    room = {"building_id": building["id"], "unit": unit["unit"], "room": unit["rooms"][-1]}
    father.call("POST", "/api/v1/me/households", 201, json={**room, "relation": "owner"})
    daughter.call("POST", "/api/v1/me/households", 201, json={**room, "relation": "child"})
    say(f"父女二人认证了住址 {building['name']}{room['unit']}单元{room['room']}")
    for claim in office.call("GET", "/api/v1/staff/household-claims")["items"]:
        if claim["user"]["display_name"] in (daughter.who, father.who):
            office.call("POST", f"/api/v1/staff/household-claims/{claim['id']}/approve", json={})
    say("居委会审核通过")
    return room


def report_garbage(daughter: Api, room: dict) -> dict:
    """Upload a photo and report the garbage piled in the stairwell."""
    photo = daughter.call("POST", "/api/v1/uploads", 201,
                          files={"file": ("garbage.jpg", jpeg(), "image/jpeg")})
    say(f"上传了照片（{photo['width']}×{photo['height']}）")
    report = daughter.call("POST", "/api/v1/reports", 201,
                           headers={"Idempotency-Key": uuid.uuid4().hex},
                           json={"category": "garbage", "description": "楼道里堆满了装修垃圾",
                                 "photo_ids": [photo["id"]], "building_id": room["building_id"],
                                 "location_text": f"{room['unit']}单元楼道"})
    say(f"随手拍：反映了“垃圾乱堆放”（#{report['id']}）")
    return report


def book_home_care(daughter: Api) -> dict:
    """Book a home-care visit for the elderly father."""
    service = next(s for s in daughter.call("GET", "/api/v1/services")["items"]
                   if "上门" in s["name"])
    father = next(p for p in daughter.call("GET", "/api/v1/bookings/people")["items"]
                  if p["relation"] != "self")
    today = datetime.now(UTC).date()
    slots = daughter.call("GET", f"/api/v1/services/{service['id']}/slots", params={
        "from": today.isoformat(), "to": (today + timedelta(days=13)).isoformat()})["items"]
    slot = next(s for s in slots if s["remaining"] > 0)
    booking = daughter.call("POST", "/api/v1/bookings", 201,
                            headers={"Idempotency-Key": uuid.uuid4().hex},
                            json={"service_id": service["id"], "start": slot["start"],
                                  "for_member_id": father["id"], "note": "老人腿脚不便"})
    say(f"为父亲预约了“{service['name']}” {slot['start'][:16]}（{booking['status']}）")
    return booking


def join_activity(daughter: Api) -> dict:
    """Sign up for the first activity that takes her."""
    for activity in daughter.call("GET", "/api/v1/activities")["items"]:
        response = daughter.http.post(
            f"/api/v1/activities/{activity['id']}/signups",
            headers={"Authorization": f"Bearer {daughter.token}"},
            json={"party_size": 1, "role": "participant"})
        if response.status_code == 201:
            say(f"报名了活动“{activity['title']}”（{response.json()['status']}）")
            return response.json()
    raise JourneyFailed("no activity accepted the signup")


def order_lunch(daughter: Api, father_id: int, room: dict, household_id: int) -> dict:
    """Order the father's meal for delivery from the first menu still open."""
    for days in (0, 1, 2):
        day = (datetime.now(UTC) + timedelta(hours=8, days=days)).date().isoformat()
        for menu in daughter.call("GET", "/api/v1/canteen/menus", params={"date": day})["items"]:
            if datetime.fromisoformat(menu["cutoff_at"]) <= datetime.now(UTC):
                continue
            dish = next((i for i in menu["items"] if i["portions_left"] > 0), None)
            if dish is None:
                continue
            order = daughter.call("POST", "/api/v1/canteen/orders", 201,
                                  headers={"Idempotency-Key": uuid.uuid4().hex}, json={
                                      "menu_id": menu["id"], "fulfilment": "delivery",
                                      "items": [{"dish_id": dish["dish_id"], "qty": 1}],
                                      "for_member_id": father_id,
                                      "address": {"household_id": household_id}})
            say(f"为父亲订了 {day} 的“{dish['name']}”，送餐上门（#{order['id']}）")
            return order
    raise JourneyFailed("no open menu in the next three days")


def property_resolves(prop: Api, report_id: int) -> None:
    """Property staff find the ticket, accept it and resolve it."""
    ticket = wait_for(lambda: next((t for t in prop.call("GET", "/api/v1/tickets")["items"]
                                    if t["report_id"] == report_id), None),
                      "the report to be routed to the property company")
    say(f"物业收到工单 #{ticket['id']}（{ticket['org']['name']}）")
    for step in ({"action": "accept"}, {"action": "start"},
                 {"action": "resolve", "note": "垃圾已清运，楼道已打扫"}):
        prop.call("POST", f"/api/v1/tickets/{ticket['id']}/transitions", json=step)
    say("物业受理并处理完毕")


def kitchen_delivers(kitchen: Api, courier: Api, order_id: int) -> None:
    """The kitchen sees the order on its feed, cooks it; the courier delivers it."""
    wait_for(lambda: on_feed(kitchen, order_id), "the order on the kitchen's feed")
    say("食堂在订单流中看到了新订单")
    courier_id = courier.call("GET", "/api/v1/me")["id"]
    for step in ({"action": "accept"}, {"action": "start"}, {"action": "ready"},
                 {"action": "dispatch", "courier_id": courier_id}):
        kitchen.call("POST", f"/api/v1/canteen/orders/{order_id}/transitions", json=step)
    say("食堂接单、制作、出餐，交给送餐员")
    courier.call("POST", f"/api/v1/canteen/deliveries/{order_id}/location", 201,
                 json={"lat": 31.1918, "lng": 121.4452, "accuracy": 15})
    say("送餐员上报了位置")
    courier.call("POST", f"/api/v1/canteen/orders/{order_id}/transitions",
                 json={"action": "deliver"})
    say("送餐员已送达")


def on_feed(kitchen: Api, order_id: int, max_pages: int = 50) -> bool:
    """Read the kitchen's feed from the start, page by page, looking for the order."""
    cursor = None
    for _ in range(max_pages):
        page = kitchen.call("GET", "/api/v1/canteen/feed",
                            params={"limit": 100, **({"cursor": cursor} if cursor else {})})
        if any(event["order_id"] == order_id for event in page["items"]):
            return True
        if not page["items"] or not page.get("next_cursor"):
            return False
        cursor = page["next_cursor"]
    return False


def run(base: str, wechat: str | None, password: str) -> None:
    """Play the whole journey."""
    tag = uuid.uuid4().hex[:8]
    daughter = resident_login(base, f"journey-{tag}-daughter", f"王女士{tag[:2]}", 1978)
    father = resident_login(base, f"journey-{tag}-father", f"王老伯{tag[:2]}", 1946)
    say("女儿和父亲通过微信登录")
    office = staff_login(base, "office", password)
    room = claim_home(daughter, father, office)
    home = daughter.call("GET", "/api/v1/bff/home")
    household_id = home["user"]["households"][0]["household_id"]
    say(f"打开首页：{len(home['activities'])} 个活动，{len(home['notices'])} 条公告")
    report = report_garbage(daughter, room)
    book_home_care(daughter)
    join_activity(daughter)
    me_father = father.call("GET", "/api/v1/me")
    order = order_lunch(daughter, me_father["id"], room, household_id)
    property_resolves(staff_login(base, "property", password), report["id"])
    kitchen_delivers(staff_login(base, "canteen", password),
                     staff_login(base, "courier", password), order["id"])
    home = daughter.call("GET", "/api/v1/bff/home")
    resolved = next(r for r in home["reports"] if r["id"] == report["id"])
    if resolved["status"] != "resolved":
        raise JourneyFailed(f"home shows the report as {resolved['status']}, not resolved")
    say(f"首页显示：反映已处理（{resolved['status_label']}），未读通知 "
        f"{home['unread_notifications']} 条")
    done = daughter.call("POST", f"/api/v1/reports/{report['id']}/feedback",
                         json={"fixed": True, "rating": 5, "comment": "处理得很快，谢谢"})
    say(f"女儿确认问题已解决，报告{done['status_label']}")
    if wechat:
        with httpx.Client(timeout=10) as http:
            sent = http.get(f"{wechat}/_mock/messages",
                            params={"touser": f"mock-openid-journey-{tag}-daughter"}).json()
        say(f"微信订阅消息共 {len(sent['items'])} 条")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and play the journey; 1 on the first unexpected answer."""
    parser = argparse.ArgumentParser(prog="python -m miniprogram_mock.journey")
    parser.add_argument("--base-url", default="http://127.0.0.1:5000")
    parser.add_argument("--wechat-url", default=None,
                        help="the mock WeChat server, to list the messages sent")
    parser.add_argument("--staff-password", default=os.environ.get("LINLI_DEMO_PASSWORD"))
    args = parser.parse_args(argv)
    if not args.staff_password:
        parser.error("give --staff-password or set LINLI_DEMO_PASSWORD (see flask seed-demo)")
    print(f"邻里 · 小程序脚本旅程 → {args.base_url}")
    try:
        run(args.base_url.rstrip("/"), args.wechat_url, args.staff_password)
    except (JourneyFailed, httpx.HTTPError, StopIteration, KeyError) as exc:
        print(f"  ✗ {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        Api.close_all()
    print("全部完成。")
    return 0


if __name__ == "__main__":
    sys.exit(main())
