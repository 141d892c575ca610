"""Community notices: the office publishes, residents read the current ones."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from app.errors import NotFound, ValidationFailed
from app.extensions import db
from app.models.notices import Notice
from app.services.demo import seed_step

MAX_CURRENT = 20


def now() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


def current_notices(community_id: int, *, limit: int = MAX_CURRENT) -> list[Notice]:
    """Published, unexpired, not withdrawn; pinned first, newest first."""
    at = now()
    return list(db.session.scalars(
        select(Notice).where(Notice.community_id == community_id, Notice.published_at <= at,
                             Notice.withdrawn_at.is_(None),
                             (Notice.expires_at.is_(None)) | (Notice.expires_at > at))
        .order_by(Notice.pinned.desc(), Notice.published_at.desc(), Notice.id.desc())
        .limit(limit)))


def publish(*, community_id: int, author_id: int, title: str, body: str, pinned: bool = False,
            published_at: datetime | None = None, expires_at: datetime | None = None) -> Notice:
    """Publish a notice (now or at `published_at`)."""
    published_at = published_at or now()
    if expires_at is not None and expires_at <= published_at:
        raise ValidationFailed("过期时间须晚于发布时间", code="invalid_expiry",
                               details={"fields": {"expires_at": ["须晚于发布时间"]}})
    notice = Notice(community_id=community_id, author_id=author_id, title=title.strip(),
                    body=body.strip(), pinned=pinned, published_at=published_at,
                    expires_at=expires_at)
    db.session.add(notice)
    db.session.commit()  # the home screen's cached notices go stale (cache generations)
    return notice


def withdraw(*, notice_id: int, community_ids: set[int]) -> Notice:
    """Take a notice down; 404 outside the office's communities."""
    notice = db.session.get(Notice, notice_id)
    if notice is None or notice.community_id not in community_ids:
        raise NotFound("找不到该公告", code="notice_not_found")
    if notice.withdrawn_at is None:
        notice.withdrawn_at = now()
        db.session.commit()
    return notice


DEMO_NOTICES = [
    ("端午节龙舟手工课开始报名", "本周六上午九点在邻里中心，名额有限，欢迎祖孙一同参加。", True),
    ("3号楼电梯加装意见征询", "业委会将于下周召开加装电梯意见征询会，请各户派代表参加。", False),
    ("冬季用电安全提醒", "请勿在楼道内给电动车充电，发现隐患可通过随手拍反映。", False),
]


@seed_step
def seed_notices(community) -> dict:
    """Demo step: a few current notices."""
    existing = set(db.session.scalars(select(Notice.title).where(
        Notice.community_id == community.id)))
    for title, body, pinned in DEMO_NOTICES:
        if title not in existing:
            db.session.add(Notice(community_id=community.id, title=title, body=body,
                                  pinned=pinned))
    db.session.flush()
    return {"notices": len(existing | {t for t, _, _ in DEMO_NOTICES})}
