"""app.inserts: a new row written by a plain INSERT from a model object, as the ORM would."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.inserts import insert_new
from app.models.reports import Report, ReportCategory, ReportStatus
from tests.reports_fixtures import build_place


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
