"""Activities as the service layer sees them: publishing, seats, waiting list, check-in, hours."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.errors import APIError
from app.extensions import db
from app.models import Notification
from app.models.activities import Activity, ActivityEvent, CheckinScan, Signup, VolunteerRole
from app.models.timebank import LedgerEntry
from app.services import activities, demo
from tests import factories as f
from tests.activities_fixtures import (
    build_place,
    count,
    events_of,
    fresh,
    later,
    ledger_sum,
    messages_to,
    notifications_for,
    outbox_rows,
    publish,
    residents,
    run_together,
    scope_of,
    seated,
    sign_up,
    statuses,
)

HELPER = {"code": "helper", "name": "手工助教", "capacity": 2, "hours": 2}


@pytest.fixture
def place(app):
    return build_place()


def refused(call) -> APIError:
    """The domain error a call raises (and the session rolled back, as the API would)."""
    with pytest.raises(APIError) as caught:
        call()
    db.session.rollback()
    return caught.value


def role_row(activity_id: int, code: str = "helper") -> VolunteerRole:
    """A volunteer role, fresh from the database."""
    db.session.expire_all()
    return db.session.scalar(select(VolunteerRole).where(
        VolunteerRole.activity_id == activity_id, VolunteerRole.code == code))


def frozen(monkeypatch, moment) -> None:
    """Make the activity service believe it is `moment`."""
    monkeypatch.setattr(activities, "now", lambda: moment)


# ---- publishing ----------------------------------------------------------------------------

def test_publishing_stores_the_activity_with_its_roles_and_a_timeline_row(place):
    activity = publish(place, capacity=20, audience=["elderly", "family"],
                       volunteer_roles=[HELPER, {**HELPER, "code": "photo", "name": "摄影",
                                                 "capacity": 1, "hours": 1.5,
                                                 "credit_mode": "fixed"}])
    assert activity.org_id == place.office.id and activity.community_id == place.comm.id
    assert activity.audience == ["elderly", "family"]
    assert activity.seats_left == 20
    assert [(r.code, r.capacity, r.credited_minutes, str(r.credit_mode))
            for r in activity.roles] == [("helper", 2, 120, "measured"), ("photo", 1, 90, "fixed")]
    assert activity.signup_closes_at == activity.starts_at  # default: until it starts
    (event,) = db.session.scalars(select(ActivityEvent).where(
        ActivityEvent.activity_id == activity.id))
    assert (event.action, event.to_status, event.actor_id) == ("create", "published",
                                                               place.clerk.id)


def test_a_time_without_an_offset_is_read_in_shanghai_time(place):
    start = later(days=3).astimezone(activities.community_tz(place.comm.id)).replace(
        tzinfo=None, hour=14, minute=0, second=0, microsecond=0)
    activity = publish(place, starts_at=start, ends_at=start + timedelta(hours=2))
    assert activity.starts_at.hour == 6  # 14:00 in Shanghai is 06:00 UTC


@pytest.mark.parametrize(("fields", "field", "code"), [
    ({"ends_at": later(days=1)}, "ends_at", "ends_before_start"),
    ({"signup_opens_at": later(days=1, hours=12), "signup_closes_at": later(days=1)},
     "signup_closes_at", "signup_window_invalid"),
    ({"signup_closes_at": later(days=5)}, "signup_closes_at", "signup_closes_after_end"),
    ({"starts_at": later(hours=-1), "ends_at": later(hours=1)}, "starts_at", "starts_in_past"),
    ({"min_age": 60, "max_age": 10}, "max_age", "age_range_invalid"),
    ({"volunteer_roles": [HELPER, HELPER]}, "volunteer_roles", "duplicate_role_code"),
    ({"cover_upload_id": 999}, "cover_upload_id", "photo_not_found"),
])
def test_bad_activities_are_refused_with_the_field_and_nothing_is_written(place, fields, field,
                                                                           code):
    error = refused(lambda: publish(place, **fields))
    assert (error.status, error.code) == (422, code)
    assert field in error.details["fields"]
    assert count(Activity) == 0 and count(VolunteerRole) == 0 and count(ActivityEvent) == 0


def test_the_cover_must_be_the_staff_members_own_upload(place):
    from tests.api.test_tickets import upload

    own, foreign = upload(place.clerk), upload(place.li, colour=(10, 200, 10))
    assert publish(place, cover_upload_id=own).cover.id == own
    assert refused(lambda: publish(place, cover_upload_id=foreign)).code == "photo_not_found"


def test_activities_belong_to_the_office_unless_another_of_the_callers_orgs_is_named(place):
    assert publish(place, by=place.care_manager).org_id == place.care.id
    error = refused(lambda: publish(place, by=place.care_manager, org_id=place.office.id))
    assert (error.status, error.code) == (422, "org_not_yours")


# ---- signing up ----------------------------------------------------------------------------

def test_a_party_takes_seats_and_the_rest_wait_in_arrival_order(place):
    activity = publish(place, capacity=3)
    first = sign_up(activity, place.grandma, 2, member_ids=[place.grandson.id])
    second = sign_up(activity, place.li, 2)
    crowd = residents(place.comm, 2)
    third, fourth = sign_up(activity, crowd[0]), sign_up(activity, crowd[1])
    assert (str(first.status), first.waitlist_position, first.member_ids) == (
        "confirmed", None, [place.grandson.id])
    assert (str(second.status), second.waitlist_position) == ("waitlisted", 1)
    assert (str(third.status), third.waitlist_position) == ("confirmed", None)  # 1 seat was left
    assert (str(fourth.status), fourth.waitlist_position) == ("waitlisted", 2)
    assert fresh(Activity, activity.id).seats_taken == 3 == seated(activity.id)
    assert [e.action for e in events_of(second.id)] == ["join_waitlist"]


@pytest.mark.parametrize(("party_size", "member_ids", "code"), [
    (4, [], "party_too_large"),
    (1, ["grandson"], "members_exceed_party"),
    (2, ["pending_daughter"], "member_not_in_household"),
    (2, ["li"], "member_not_in_household"),
    (2, ["grandma"], "members_exceed_party"),
])
def test_bad_parties_are_refused_and_nothing_is_written(place, party_size, member_ids, code):
    activity = publish(place, capacity=10)
    ids = [getattr(place, name).id for name in member_ids]
    caller = place.grandma
    error = refused(lambda: sign_up(activity, caller, party_size, member_ids=ids))
    assert (error.status, error.code) == (422, code)
    assert count(Signup) == 0 and fresh(Activity, activity.id).seats_taken == 0


def test_age_limits_apply_to_every_person_in_the_party(place):
    elders = publish(place, title="长者太极拳", min_age=60)
    assert str(sign_up(elders, place.grandma).status) == "confirmed"
    error = refused(lambda: sign_up(elders, place.li))
    assert (error.code, error.details["user_id"]) == ("age_not_allowed", place.li.id)

    kids = publish(place, title="少儿书法", max_age=12)
    error = refused(lambda: sign_up(kids, place.grandma, 2, member_ids=[place.grandson.id]))
    assert (error.code, error.details["user_id"]) == ("age_not_allowed", place.grandma.id)

    family = publish(place, title="亲子手工", min_age=5)
    error = refused(lambda: sign_up(family, place.grandma, 3, member_ids=[place.grandson.id]))
    assert error.code == "members_required"  # the unnamed third person's age is unknown
    assert str(sign_up(family, place.grandma, 2, member_ids=[place.grandson.id]).status) == \
        "confirmed"
    assert count(Signup) == 2


def test_an_unknown_birth_year_cannot_pass_an_age_limit(place):
    activity = publish(place, min_age=60)
    nobody = f.resident(place.comm, display_name="新居民")
    assert refused(lambda: sign_up(activity, nobody)).code == "birth_year_unknown"
    assert count(Signup) == 0


def test_one_signup_per_resident_per_activity(place):
    activity = publish(place)
    first = sign_up(activity, place.li)
    error = refused(lambda: sign_up(activity, place.li, 2))
    assert (error.status, error.code, error.details["signup_id"]) == (
        409, "already_signed_up", first.id)
    assert count(Signup) == 1 and fresh(Activity, activity.id).seats_taken == 1


def test_the_database_refuses_a_second_row_for_the_same_resident(place):
    activity = publish(place)
    sign_up(activity, place.li)
    db.session.add(Signup(community_id=place.comm.id, activity_id=activity.id,
                          user_id=place.li.id, status="waitlisted", queue_no=99))
    with pytest.raises(Exception, match="(?i)unique"):
        db.session.commit()
    db.session.rollback()


def test_signup_is_refused_before_it_opens_and_after_it_closes(place, monkeypatch):
    activity = publish(place, signup_opens_at=later(days=1), starts_in=timedelta(days=3))
    error = refused(lambda: sign_up(activity, place.li))
    assert (error.status, error.code) == (409, "signup_not_open")
    frozen(monkeypatch, activity.signup_closes_at + timedelta(seconds=1))
    error = refused(lambda: sign_up(activity, place.li))
    assert (error.status, error.code) == (409, "signup_closed")
    assert count(Signup) == 0


def test_a_resident_of_another_community_cannot_see_or_join(place):
    activity = publish(place)
    error = refused(lambda: sign_up(activity, place.other_resident))
    assert (error.status, error.code) == (404, "activity_not_found")
    assert count(Signup) == 0


def test_volunteers_have_their_own_seats_and_sign_up_alone(place):
    activity = publish(place, capacity=1, volunteer_roles=[{**HELPER, "capacity": 1}])
    crowd = residents(place.comm, 2)
    volunteer = sign_up(activity, place.li, role="helper")
    assert (str(volunteer.status), volunteer.role, volunteer.volunteer_role.name) == (
        "confirmed", "helper", "手工助教")
    assert str(sign_up(activity, crowd[0]).status) == "confirmed"  # participants unaffected
    assert str(sign_up(activity, crowd[1], role="helper").status) == "waitlisted"
    assert refused(lambda: sign_up(activity, place.grandma, 2, role="helper")).code == \
        "volunteer_party_size"
    assert refused(lambda: sign_up(activity, place.grandma, role="chef")).code == "unknown_role"
    assert seated(activity.id, "helper") == 1 == role_row(activity.id).seats_taken


# ---- cancelling and the waiting list -------------------------------------------------------

def test_freed_seats_go_to_whole_parties_in_order_skipping_one_that_does_not_fit(place):
    activity = publish(place, capacity=2)
    a, b, c, d = residents(place.comm, 4)
    seat_a = sign_up(activity, a, 2)
    big = sign_up(activity, b, 3)        # waits first, but needs 3
    small = sign_up(activity, c, 1)      # waits second
    pair = sign_up(activity, d, 2)       # waits third
    activities.cancel_signup(activity_id=activity.id, signup_id=seat_a.id, user_id=a.id)
    assert statuses(activity.id) == {a.id: "cancelled", b.id: "waitlisted",
                                     c.id: "confirmed", d.id: "waitlisted"}
    assert activities.load_signup(big.id).waitlist_position == 1  # kept its place
    assert activities.load_signup(pair.id).waitlist_position == 2
    assert seated(activity.id) == 1 == fresh(Activity, activity.id).seats_taken
    assert [e.action for e in events_of(small.id)] == ["join_waitlist", "promote"]

    activities.update_activity(scope=scope_of(place.clerk), activity_id=activity.id,
                               changes={"capacity": 4})
    assert statuses(activity.id)[b.id] == "confirmed"  # first in line, and now it fits
    assert statuses(activity.id)[d.id] == "waitlisted"
    assert seated(activity.id) == 4 == fresh(Activity, activity.id).seats_taken


def test_a_promotion_notifies_the_resident_through_wechat(place):
    activity = publish(place, capacity=1)
    seat = sign_up(activity, place.li)
    waiting = sign_up(activity, place.grandma)
    activities.cancel_signup(activity_id=activity.id, signup_id=seat.id, user_id=place.li.id)
    assert len(outbox_rows("notify_signup_promoted")) == 1
    (note,) = notifications_for(place.grandma, "activity_promoted")
    assert note.data["signup_id"] == waiting.id and note.wx_status == "sent"
    (message,) = messages_to(place.grandma)
    assert message["template_id"] == "tmpl-activity-promoted"
    assert message["data"]["thing1"]["value"] == "端午香囊手工课"
    assert message["data"]["phrase2"]["value"] == "候补成功"
    assert messages_to(place.li) == []


def test_cancelling_is_refused_after_signup_closes(place, monkeypatch):
    activity = publish(place)
    signup = sign_up(activity, place.li)
    frozen(monkeypatch, activity.signup_closes_at)
    error = refused(lambda: activities.cancel_signup(activity_id=activity.id,
                                                     signup_id=signup.id, user_id=place.li.id))
    assert (error.status, error.code) == (409, "signup_closed")
    assert str(fresh(Signup, signup.id).status) == "confirmed"


def test_someone_elses_signup_cannot_be_cancelled(place):
    activity = publish(place)
    signup = sign_up(activity, place.li)
    error = refused(lambda: activities.cancel_signup(activity_id=activity.id,
                                                     signup_id=signup.id,
                                                     user_id=place.grandma.id))
    assert (error.status, error.code) == (404, "signup_not_found")
    assert str(fresh(Signup, signup.id).status) == "confirmed"


def test_cancelling_twice_is_an_invalid_transition(place):
    activity = publish(place)
    signup = sign_up(activity, place.li)
    activities.cancel_signup(activity_id=activity.id, signup_id=signup.id, user_id=place.li.id)
    error = refused(lambda: activities.cancel_signup(activity_id=activity.id,
                                                     signup_id=signup.id, user_id=place.li.id))
    assert (error.status, error.code) == (409, "invalid_transition")
    assert fresh(Activity, activity.id).seats_taken == 0


def test_signing_up_again_after_cancelling_goes_to_the_end_of_the_queue(place):
    activity = publish(place, capacity=1)
    other = residents(place.comm, 1)[0]
    mine = sign_up(activity, place.li)
    activities.cancel_signup(activity_id=activity.id, signup_id=mine.id, user_id=place.li.id)
    sign_up(activity, other)
    again = sign_up(activity, place.li)
    assert again.id == mine.id and (str(again.status), again.waitlist_position) == (
        "waitlisted", 1)
    assert [e.action for e in events_of(mine.id)] == ["sign_up", "cancel", "join_waitlist"]


def test_capacity_cannot_drop_below_the_seats_taken(place):
    activity = publish(place, capacity=3)
    sign_up(activity, place.li, 2)
    error = refused(lambda: activities.update_activity(
        scope=scope_of(place.clerk), activity_id=activity.id, changes={"capacity": 1}))
    assert (error.status, error.code) == (409, "capacity_below_taken")
    assert fresh(Activity, activity.id).capacity == 3


def test_a_role_with_signups_cannot_be_removed(place):
    activity = publish(place, volunteer_roles=[HELPER])
    sign_up(activity, place.li, role="helper")
    error = refused(lambda: activities.update_activity(
        scope=scope_of(place.clerk), activity_id=activity.id, changes={"volunteer_roles": []}))
    assert (error.status, error.code) == (409, "role_in_use")
    assert count(VolunteerRole) == 1


def test_cancelling_an_activity_cancels_every_signup_and_tells_everyone(place):
    activity = publish(place, capacity=1, volunteer_roles=[HELPER])
    sign_up(activity, place.li)
    sign_up(activity, place.grandma)  # waitlisted
    volunteer = residents(place.comm, 1)[0]
    sign_up(activity, volunteer, role="helper")
    activities.cancel_activity(scope=scope_of(place.clerk), activity_id=activity.id,
                               reason="台风预警，活动取消")
    assert set(statuses(activity.id).values()) == {"cancelled"}
    row = fresh(Activity, activity.id)
    assert (str(row.status), row.seats_taken, row.cancel_reason) == (
        "cancelled", 0, "台风预警，活动取消")
    assert role_row(activity.id).seats_taken == 0
    for person in (place.li, place.grandma, volunteer):
        (note,) = notifications_for(person, "activity_cancelled")
        assert note.body == "台风预警，活动取消"
        (message,) = messages_to(person)
        assert message["data"]["phrase2"]["value"] == "活动取消"
    error = refused(lambda: sign_up(activity, residents(place.comm, 1, prefix="迟到")[0]))
    assert (error.status, error.code) == (409, "activity_cancelled")
    error = refused(lambda: activities.cancel_activity(
        scope=scope_of(place.clerk), activity_id=activity.id, reason="again"))
    assert error.code == "invalid_transition"


def test_staff_of_another_community_cannot_touch_the_activity(place):
    activity = publish(place)
    error = refused(lambda: activities.cancel_activity(
        scope=scope_of(place.other_clerk), activity_id=activity.id, reason="x"))
    assert (error.status, error.code) == (404, "activity_not_found")
    assert str(fresh(Activity, activity.id).status) == "published"


# ---- reminders -----------------------------------------------------------------------------

def test_reminders_go_the_day_before_and_the_hour_before_never_to_cancelled(place, monkeypatch):
    activity = publish(place, starts_in=timedelta(hours=20), capacity=2)
    going, leaving = sign_up(activity, place.li), sign_up(activity, place.grandma)
    activities.cancel_signup(activity_id=activity.id, signup_id=leaving.id,
                             user_id=place.grandma.id)
    assert activities.send_reminders() == 1
    assert activities.send_reminders() == 0
    frozen(monkeypatch, activity.starts_at - timedelta(minutes=50))
    assert activities.send_reminders() == 1
    titles = [n.title for n in notifications_for(place.li, "activity_reminder")]
    assert titles == ["活动提醒：端午香囊手工课明天开始", "活动提醒：端午香囊手工课1小时后开始"]
    assert notifications_for(place.grandma) == []
    assert len(messages_to(place.li)) == 2
    assert going.id == notifications_for(place.li)[0].data["signup_id"]


def test_several_residents_inside_the_last_hour_each_get_the_hour_reminder_once(place):
    # The day-before pass skips them one by one, committing each: the next signup's activity
    # must still be readable (it was lazy="raise" after the commit, failing the periodic job).
    activity = publish(place, starts_in=timedelta(minutes=40), capacity=3)
    for person in (place.li, place.grandma):
        sign_up(activity, person)
    assert activities.send_reminders() == 2
    assert activities.send_reminders() == 0
    for person in (place.li, place.grandma):
        titles = [n.title for n in notifications_for(person, "activity_reminder")]
        assert titles == ["活动提醒：端午香囊手工课1小时后开始"]


def test_no_reminder_for_a_cancelled_activity(place):
    activity = publish(place, starts_in=timedelta(hours=5))
    sign_up(activity, place.li)
    activities.cancel_activity(scope=scope_of(place.clerk), activity_id=activity.id,
                               reason="场地维修")
    assert activities.send_reminders() == 0
    assert notifications_for(place.li, "activity_reminder") == []


def test_moving_the_start_sends_the_reminders_again(place):
    activity = publish(place, starts_in=timedelta(hours=20))
    sign_up(activity, place.li)
    assert activities.send_reminders() == 1
    activities.update_activity(scope=scope_of(place.clerk), activity_id=activity.id, changes={
        "starts_at": later(hours=22), "ends_at": later(hours=24)})
    assert activities.send_reminders() == 1


# ---- check-in and hours --------------------------------------------------------------------

def soon(place, **fields):
    """An activity starting in an hour, so check-in is open."""
    return publish(place, starts_in=timedelta(hours=1), hours=3, **fields)


def token_of(signup) -> str:
    return activities.signup_qr(signup_id=signup.id, user_id=signup.user_id)["token"]


def scan(place, activity, token, nonce="nonce-0001", kind="check_in", **kw) -> dict:
    return activities.scan(scope=scope_of(place.clerk), activity_id=activity.id, token=token,
                           nonce=nonce, kind=kind, **kw)


def test_the_qr_code_is_a_png_of_a_signed_token(place):
    from io import BytesIO

    from PIL import Image

    activity = soon(place)
    signup = sign_up(activity, place.li)
    qr = activities.signup_qr(signup_id=signup.id, user_id=place.li.id)
    assert qr["png"].startswith(b"\x89PNG") and Image.open(BytesIO(qr["png"])).size[0] > 100
    claims = activities.read_token(qr["token"])
    assert (claims["s"], claims["a"], claims["u"]) == (signup.id, activity.id, place.li.id)
    assert qr["expires_at"] == activity.ends_at + timedelta(minutes=120)


def test_a_scan_checks_in_once_and_a_reupload_answers_the_same(place):
    activity = soon(place)
    signup = sign_up(activity, place.li)
    token = token_of(signup)
    first = scan(place, activity, token)
    again = scan(place, activity, token)
    other = scan(place, activity, token, nonce="nonce-0002")
    assert (first["result"], first["replayed"]) == ("checked_in", False)
    assert (again["result"], again["replayed"]) == ("checked_in", True)
    assert other["result"] == "already_checked_in"
    assert str(fresh(Signup, signup.id).status) == "checked_in"
    assert [e.action for e in events_of(signup.id)] == ["sign_up", "check_in"]
    assert count(CheckinScan) == 2


def test_an_offline_scan_keeps_the_time_it_was_scanned(place):
    activity = soon(place)
    signup = sign_up(activity, place.li)
    at = later(minutes=-10)
    assert scan(place, activity, token_of(signup), scanned_at=at)["scanned_at"] == at
    assert fresh(Signup, signup.id).checked_in_at == at
    error = refused(lambda: scan(place, activity, token_of(signup), nonce="nonce-0009",
                                 scanned_at=later(hours=1)))
    assert (error.status, error.code) == (422, "scanned_at_in_future")


def test_forged_foreign_and_expired_tokens_are_refused_and_nothing_is_written(place,
                                                                               monkeypatch):
    activity, other = soon(place), soon(place, title="另一个活动")
    signup = sign_up(activity, place.li)
    token = token_of(signup)
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    guessed = activities.URLSafeSerializer("guessed-secret", salt=activities.TOKEN_SALT).dumps(
        {"s": signup.id, "a": activity.id, "u": place.li.id, "e": 2_000_000_000})
    foreign = token_of(sign_up(other, place.grandma))
    codes = [refused(lambda t=t: scan(place, activity, t)).code
             for t in (forged, guessed, "not-a-token", foreign)]
    assert codes == ["checkin_token_invalid"] * 3 + ["checkin_token_wrong_activity"]
    frozen(monkeypatch, activity.ends_at + timedelta(hours=3))
    assert refused(lambda: scan(place, activity, token)).code == "checkin_token_expired"
    assert count(CheckinScan) == 0 and str(fresh(Signup, signup.id).status) == "confirmed"


def test_a_nonce_cannot_be_reused_for_another_scan(place):
    activity = soon(place)
    first, second = sign_up(activity, place.li), sign_up(activity, place.grandma)
    scan(place, activity, token_of(first))
    error = refused(lambda: scan(place, activity, token_of(second)))
    assert (error.status, error.code) == (422, "nonce_reused")
    assert str(fresh(Signup, second.id).status) == "confirmed"


def test_check_in_is_refused_for_a_cancelled_activity_or_a_waitlisted_signup(place):
    activity = soon(place, capacity=1)
    seat = sign_up(activity, place.li)
    waiting = sign_up(activity, place.grandma)
    assert refused(lambda: activities.signup_qr(signup_id=waiting.id,
                                                user_id=place.grandma.id)).code == \
        "signup_not_confirmed"
    token = token_of(seat)
    activities.cancel_activity(scope=scope_of(place.clerk), activity_id=activity.id,
                               reason="取消")
    error = refused(lambda: scan(place, activity, token))
    assert (error.status, error.code) == (409, "activity_cancelled")
    assert count(CheckinScan) == 0


def test_check_in_opens_two_hours_before_the_start(place):
    activity = publish(place, starts_in=timedelta(hours=5))
    error = refused(lambda: scan(place, activity, token_of(sign_up(activity, place.li))))
    assert (error.status, error.code) == (409, "checkin_not_open")


@pytest.mark.parametrize(("mode", "stayed", "minutes"), [
    ("measured", timedelta(minutes=90), 90),
    ("measured", timedelta(hours=5), 120),     # capped by the role's 2 hours
    ("fixed", timedelta(minutes=30), 120),     # the role's hours whatever the time
])
def test_a_volunteer_checks_out_and_earns_hours(place, monkeypatch, mode, stayed, minutes):
    activity = publish(place, starts_in=timedelta(hours=1), hours=6,
                       volunteer_roles=[{**HELPER, "credit_mode": mode}])
    signup = sign_up(activity, place.li, role="helper")
    token = token_of(signup)
    frozen(monkeypatch, activity.starts_at + stayed + timedelta(minutes=1))
    scan(place, activity, token, scanned_at=activity.starts_at)  # an offline scanner's upload
    out = scan(place, activity, token, nonce="nonce-out-1", kind="check_out",
               scanned_at=activity.starts_at + stayed)
    assert out["result"] == "checked_out"
    row = fresh(Signup, signup.id)
    assert (row.credited_minutes, str(row.status)) == (minutes, "checked_in")
    (entry,) = db.session.scalars(select(LedgerEntry).where(LedgerEntry.user_id == place.li.id))
    assert (str(entry.kind), entry.points, entry.minutes, entry.signup_id) == (
        "credit", minutes * 10 // 60, minutes, signup.id)
    again = scan(place, activity, token, nonce="nonce-out-2", kind="check_out")
    assert again["result"] == "already_checked_out"
    assert count(LedgerEntry) == 1 and ledger_sum(place.li) == minutes * 10 // 60


def test_participants_do_not_check_out_and_nobody_checks_out_before_checking_in(place):
    activity = soon(place, volunteer_roles=[HELPER])
    participant = sign_up(activity, place.grandma)
    volunteer = sign_up(activity, place.li, role="helper")
    scan(place, activity, token_of(participant))
    assert refused(lambda: scan(place, activity, token_of(participant), nonce="nonce-x-01",
                                kind="check_out")).code == "checkout_not_needed"
    assert refused(lambda: scan(place, activity, token_of(volunteer), nonce="nonce-x-02",
                                kind="check_out")).code == "not_checked_in"
    assert count(LedgerEntry) == 0


def test_staff_mark_attendance_by_hand(place):
    activity = soon(place, volunteer_roles=[{**HELPER, "credit_mode": "fixed"}])
    signup = sign_up(activity, place.grandma, role="helper")
    scope = scope_of(place.clerk)
    result = activities.mark_attendance(scope=scope, activity_id=activity.id,
                                        signup_id=signup.id, action="check_in", note="无手机")
    assert result["result"] == "checked_in"
    activities.mark_attendance(scope=scope, activity_id=activity.id, signup_id=signup.id,
                               action="check_out")
    assert ledger_sum(place.grandma) == 20  # 2 hours at 10 points an hour
    assert [e.data.get("by_hand") for e in events_of(signup.id)[1:]] == [True, True]


# ---- demo ----------------------------------------------------------------------------------

def test_the_demo_has_upcoming_activities_with_volunteer_roles_and_rewards(app, monkeypatch):
    monkeypatch.setenv(demo.PASSWORD_ENV, "demo-pass-2024")
    first = demo.seed_demo()["counts"]
    again = demo.seed_demo()["counts"]
    assert first["activities"] == again["activities"] == len(activities.DEMO_ACTIVITIES)
    assert first["timebank_rewards"] == again["timebank_rewards"] >= 3
    assert first["timebank_entries"] == again["timebank_entries"] > 0
    dragon_boat = db.session.scalar(select(Activity).where(Activity.title == "端午香囊手工课"))
    assert dragon_boat.starts_at > activities.now() and dragon_boat.max_party_size == 2
    assert {r.code for r in db.session.scalars(select(VolunteerRole).where(
        VolunteerRole.activity_id == dragon_boat.id))} == {"helper", "photographer"}
    assert count(Notification) == 0


# ---- concurrency (PostgreSQL) --------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.concurrency
def test_two_hundred_concurrent_signups_fill_exactly_fifty_seats_in_arrival_order(app, place):
    activity_id = publish(place, capacity=50, max_party_size=3).id
    people = [p.id for p in residents(place.comm, 200)]
    sizes = [(1, 2, 3, 1)[i % 4] for i in range(200)]

    def attempt(i: int):
        def call():
            s = activities.sign_up(activity_id=activity_id, user_id=people[i],
                                   party_size=sizes[i])
            return s.id, str(s.status), s.waitlist_position, s.queue_no
        return call

    results, refusals, crashes = run_together(app, [attempt(i) for i in range(200)])
    assert crashes == [] and refusals == [None] * 200
    confirmed = [r for r in results if r[1] == "confirmed"]
    waiting = [r for r in results if r[1] == "waitlisted"]
    assert sum(sizes[i] for i, r in enumerate(results) if r[1] == "confirmed") == 50
    assert len(confirmed) + len(waiting) == 200
    assert fresh(Activity, activity_id).seats_taken == 50 == seated(activity_id)
    # Arrival numbers are 1..200 without gaps, and the waiting list follows them.
    assert sorted(r[3] for r in results) == list(range(1, 201))
    by_arrival = sorted(waiting, key=lambda r: r[3])
    assert [r[2] for r in by_arrival] == list(range(1, len(waiting) + 1))
    # Each arrival was confirmed exactly when its whole party still fitted.
    taken = 0
    for i, (_, status, _, _) in sorted(enumerate(results), key=lambda item: item[1][3]):
        fits = taken + sizes[i] <= 50
        assert status == ("confirmed" if fits else "waitlisted")
        taken += sizes[i] if fits else 0


@pytest.mark.postgres
@pytest.mark.concurrency
def test_concurrent_cancellations_promote_each_freed_seat_exactly_once(app, place):
    activity = publish(place, capacity=50)
    seated_people = residents(place.comm, 50, prefix="先到")
    waiting_people = residents(place.comm, 30, prefix="候补")
    seats = [sign_up(activity, person).id for person in seated_people]
    waiting = [sign_up(activity, person).id for person in waiting_people]
    activity_id = activity.id
    leaving = [(sid, person.id) for sid, person in zip(seats[:20], seated_people, strict=False)]

    def cancel(signup_id: int, user_id: int):
        return lambda: str(activities.cancel_signup(
            activity_id=activity_id, signup_id=signup_id, user_id=user_id).status)

    results, refusals, crashes = run_together(app, [cancel(*pair) for pair in leaving])
    assert crashes == [] and refusals == [None] * 20 and results == ["cancelled"] * 20
    db.session.expire_all()
    rows = {s.id: s for s in db.session.scalars(select(Signup).where(
        Signup.activity_id == activity.id))}
    assert [str(rows[i].status) for i in waiting] == ["confirmed"] * 20 + ["waitlisted"] * 10
    assert fresh(Activity, activity.id).seats_taken == 50 == seated(activity.id)
    assert [activities.load_signup(i).waitlist_position for i in waiting[20:]] == list(
        range(1, 11))
    promotions = db.session.scalars(select(ActivityEvent.signup_id).where(
        ActivityEvent.activity_id == activity.id, ActivityEvent.action == "promote")).all()
    assert sorted(promotions) == sorted(waiting[:20])
    assert len(outbox_rows("notify_signup_promoted")) == 20
    assert count(Notification, Notification.kind == "activity_promoted") == 20
