"""Activity and time-bank jobs: promotion and cancellation notices, reminders, redemptions."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models.activities import Activity, ActivityEvent, Signup, SignupStatus
from app.models.timebank import Redemption, Reward
from app.services import activities, notifications
from workers.jobs import job


@job("notify_signup_promoted")
def notify_signup_promoted(signup_id: int, event_id: int) -> bool:
    """Tell a resident that their place on the waiting list became a confirmed seat."""
    signup, event = db.session.get(Signup, signup_id), db.session.get(ActivityEvent, event_id)
    if signup is None or event is None:
        return False
    activity = db.session.get(Activity, signup.activity_id)
    return bool(notifications.notify_user(
        user_id=signup.user_id, kind="activity_promoted",
        title=f"候补成功：{activity.title}",
        body=f"您已从候补转为报名成功，请准时参加（{activity.place}）",
        dedupe_key=f"activity-event:{event.id}",
        data={"activity_id": activity.id, "signup_id": signup.id, "status": "confirmed"},
        wx_data=activities.message_fields(activity, "候补成功"),
        page=f"pages/activities/detail?id={activity.id}"))


@job("notify_activity_cancelled")
def notify_activity_cancelled(activity_id: int) -> int:
    """Tell everyone whose signup the cancellation ended; returns how many were new."""
    activity = db.session.get(Activity, activity_id)
    if activity is None:
        return 0
    user_ids = db.session.scalars(select(Signup.user_id).where(
        Signup.activity_id == activity.id, Signup.status == SignupStatus.CANCELLED,
        Signup.cancel_source == "activity").order_by(Signup.queue_no)).all()
    sent = 0
    for user_id in user_ids:
        sent += bool(notifications.notify_user(
            user_id=user_id, kind="activity_cancelled", title=f"活动取消：{activity.title}",
            body=activity.cancel_reason or "",
            dedupe_key=f"activity-cancel:{activity.id}:u{user_id}",
            data={"activity_id": activity.id},
            wx_data=activities.message_fields(activity, "活动取消", activity.cancel_reason),
            page=f"pages/activities/detail?id={activity.id}"))
    return sent


@job("activity_reminders")
def activity_reminders() -> int:
    """Reminders the day before and 1 h before (a periodic job)."""
    return activities.send_reminders()


@job("notify_redemption_cancelled")
def notify_redemption_cancelled(redemption_id: int) -> bool:
    """Tell a resident that a redemption was cancelled and the points came back."""
    redemption = db.session.get(Redemption, redemption_id)
    if redemption is None:
        return False
    reward = db.session.get(Reward, redemption.reward_id)
    return bool(notifications.notify_user(
        user_id=redemption.user_id, kind="redemption_cancelled",
        title=f"兑换已取消：{reward.name}",
        body=f"{redemption.cost} 积分已退回。{redemption.cancel_reason or ''}".strip(),
        dedupe_key=f"redemption-cancel:{redemption.id}",
        data={"redemption_id": redemption.id, "points": redemption.cost},
        wx_data={"thing1": reward.name, "phrase2": "已取消",
                 "time3": (redemption.cancelled_at or redemption.updated_at)
                 .astimezone(activities.community_tz(redemption.community_id))
                 .strftime("%Y-%m-%d %H:%M"),
                 "thing4": activities.wx_text(redemption.cancel_reason)},
        page="pages/timebank/index"))
