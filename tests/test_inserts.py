"""app.inserts: new rows written by plain INSERTs from model objects, as the ORM would."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.inserts import NewId, insert_chain, insert_new, insert_or_skip
from app.models import Community, OutboxMessage
from app.models.reports import Report, ReportCategory, ReportEvent, ReportPhoto, ReportStatus
from app.services import outbox, uploads
from tests.reports_fixtures import build_place, jpeg_bytes
from tests.sql_fixtures import statements


@pytest.fixture
def place(app):
    return build_place()


def _row_as_loaded(report_id: int) -> dict:
    """The row read back on another connection (only what was committed)."""
    with db.engine.connect() as conn:
        return dict(conn.execute(select(Report.__table__).where(Report.id == report_id))
                    .mappings().one())


def test_the_row_has_the_objects_values_its_relationships_keys_and_the_defaults(place):
    category = db.session.scalar(select(ReportCategory).where(ReportCategory.code == "noise"))
    report = Report(community_id=place.comm.id, reporter_id=place.resident.id,
                    category=category, building=place.bld, description="楼上装修到深夜")

    insert_new(report)
    db.session.commit()

    row = _row_as_loaded(report.id)
    assert (row["category_id"], row["building_id"]) == (category.id, place.bld.id)
    assert (row["status"], row["source"], row["extra"], row["location_text"]) == (
        ReportStatus.SUBMITTED, "miniprogram", {}, "")
    # The object holds what was written, defaults included: a response can be made from it.
    assert report.id == row["id"] and report.status == ReportStatus.SUBMITTED
    assert (report.category_id, report.building_id, report.source) == (
        category.id, place.bld.id, "miniprogram")
    assert report.created_at is not None and report.updated_at is not None
    assert report not in db.session


def test_a_failed_insert_writes_nothing(place):
    report = Report(community_id=place.comm.id, category_id=999_999, description="无此类别")

    with pytest.raises(IntegrityError):  # the category's foreign key
        insert_new(report)
        db.session.flush()
    db.session.rollback()

    with db.engine.connect() as conn:
        assert conn.execute(select(Report.id)).first() is None


# --- insert_chain: rows of several models referring to each other's new ids ---------------------


def _chain(place, photo_count: int = 2, category_id: int | None = None):
    """A report, its photos, its timeline row and its routing job, as a submission makes them."""
    category = db.session.scalar(select(ReportCategory).where(ReportCategory.code == "noise"))
    report = Report(community_id=place.comm.id, reporter_id=place.resident.id,
                    category_id=category_id or category.id, building_id=place.bld.id,
                    description="楼上装修到深夜")
    report.photos = [ReportPhoto(report_id=NewId(report), position=i, upload=uploads.create_upload(
        owner_id=place.resident.id, data=jpeg_bytes())) for i in range(photo_count)]
    event = ReportEvent(report_id=NewId(report), action="submit", to_status="submitted")
    job = outbox.new_job("route_report", queue="high", report_id=NewId(report), n=3,
                         note="x", gone=None, flags=[1, 2], ok=True, ratio=0.5,
                         since_ms=1_700_000_000_000, nested={"a": [1]})
    return report, event, job


def test_a_chain_writes_rows_that_hold_each_others_new_ids(place):
    report, event, job = _chain(place)

    insert_chain(report, *report.photos, event, job)
    db.session.commit()

    with db.engine.connect() as conn:
        photos = conn.execute(select(ReportPhoto.report_id, ReportPhoto.position)
                              .order_by(ReportPhoto.position)).all()
        event_row = conn.execute(select(ReportEvent.__table__)).mappings().one()
        args = conn.scalar(select(OutboxMessage.args).where(OutboxMessage.id == job.id))
    assert _row_as_loaded(report.id)["description"] == "楼上装修到深夜"
    assert photos == [(report.id, 0), (report.id, 1)]
    assert (event_row["id"], event_row["report_id"], event_row["public"]) == (
        event.id, report.id, True)
    assert args == {"report_id": report.id, "n": 3, "note": "x", "gone": None, "flags": [1, 2],
                    "ok": True, "ratio": 0.5, "since_ms": 1_700_000_000_000, "nested": {"a": [1]}}
    # The objects hold what was written: ids in place of every NewId.
    assert [p.report_id for p in report.photos] == [report.id, report.id]
    assert event.report_id == report.id and job.args["report_id"] == report.id
    assert all(isinstance(o.id, int) for o in (report, *report.photos, event, job))


@pytest.mark.postgres  # elsewhere one INSERT a row
def test_a_chain_is_one_statement_on_postgresql(place):
    report, event, job = _chain(place, photo_count=3)
    assert all(photo.upload.id for photo in report.photos)  # loaded, as a submission has them
    with statements() as seen:
        insert_chain(report, *report.photos, event, job)
    assert len(seen) == 1 and seen[0].lstrip().startswith("WITH")


def test_a_failed_chain_writes_nothing(place):
    report, event, job = _chain(place)
    event.actor_id = 999_999  # no such user: the fourth row of five fails

    with pytest.raises(IntegrityError):
        insert_chain(report, *report.photos, event, job)
        db.session.flush()
    db.session.rollback()

    with db.engine.connect() as conn:
        for model in (Report, ReportPhoto, ReportEvent, OutboxMessage):
            assert conn.execute(select(model.id)).first() is None


def test_a_new_id_of_a_row_not_written_before_is_refused_before_anything_is(place):
    report, event, job = _chain(place, photo_count=0)

    with pytest.raises(ValueError, match="ReportEvent refers to the new id of a Report"):
        insert_chain(event, report, job)  # the event before its report
    with pytest.raises(ValueError, match="arguments of job"):
        outbox.new_job("route_report", report_ids=[NewId(report)])  # only a whole argument
    db.session.commit()

    with db.engine.connect() as conn:
        assert conn.execute(select(Report.id)).first() is None


# --- insert_or_skip: INSERT ... ON CONFLICT DO NOTHING on PostgreSQL and SQLite ------------------


def test_insert_or_skip_writes_a_new_row_and_skips_a_duplicate(app):
    stmt = insert_or_skip(Community, index_elements=["code"]).returning(Community.id)
    row = {"code": "dup", "name": "社区", "timezone": "Asia/Shanghai"}

    first = db.session.scalar(stmt.values(**row))
    again = db.session.scalar(stmt.values(**{**row, "name": "另一个"}))  # no IntegrityError
    db.session.commit()

    assert isinstance(first, int) and again is None
    with db.engine.connect() as conn:
        assert conn.execute(select(Community.id, Community.name)).all() == [(first, "社区")]
