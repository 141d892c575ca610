"""The report category catalogue and the default routing rules (seeded with the demo)."""

from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import Community, Org, OrgType
from app.models.reports import ReportCategory, RoutingRule, RoutingTarget
from app.services.demo import seed_step

# code, 中文名, English name, SLA hours, photo required, private, extra fields
CATEGORIES = [
    ("illegal_parking", "车辆乱停放", "Illegal parking", 4, True, False,
     [{"key": "plate", "label": "车牌号", "required": False}]),
    ("fire_lane_blocked", "消防通道堵塞/安全隐患", "Fire lane blocked / safety hazard", 2, True,
     False, []),
    ("garbage", "垃圾乱堆放", "Piled garbage", 24, True, False, []),
    ("broken_facility", "公共设施损坏", "Broken public facility", 72, False, False, []),
    ("lighting", "路灯/楼道灯不亮", "Lighting out", 48, False, False, []),
    ("elevator_fault", "电梯故障", "Elevator fault", 4, False, False,
     [{"key": "trapped", "label": "是否有人被困", "required": True}]),
    ("water_leak", "漏水渗水", "Water leak", 24, False, False, []),
    ("noise", "噪音扰民", "Noise", 24, False, False, []),
    ("greenery", "绿化养护", "Greenery", 120, False, False, []),
    ("elevator_installation", "加装电梯", "Elevator installation", 240, False, False, []),
    ("public_space_change", "公共空间改造", "Public space change", 240, False, False, []),
    ("neighbour_dispute", "邻里纠纷", "Neighbour dispute", 72, False, True, []),
    ("other", "其他", "Other", 72, False, False, []),
]

# (category codes, [org types], copy the micro-grid's grid worker)
ROUTING = [
    (["fire_lane_blocked"], ["property_company", "community_office"], True),
    (["illegal_parking", "garbage", "broken_facility", "lighting", "elevator_fault",
      "water_leak", "greenery"], ["property_company"], True),
    (["elevator_installation", "public_space_change"], ["owners_committee"], False),
    (["neighbour_dispute", "noise"], ["community_office"], True),
]


def ensure_categories() -> int:
    """Create the categories that are missing; returns how many were created."""
    existing = set(db.session.scalars(select(ReportCategory.code)))
    created = 0
    for order, (code, name, name_en, sla, photo, private, extra) in enumerate(CATEGORIES):
        if code in existing:
            continue
        db.session.add(ReportCategory(code=code, name=name, name_en=name_en, sla_hours=sla,
                                      photo_required=photo, is_private=private,
                                      extra_fields=extra, sort_order=order))
        created += 1
    db.session.flush()
    return created


def ensure_routing_rules(community: Community) -> int:
    """Give the community the default rules unless it already has rules."""
    if db.session.scalar(select(RoutingRule.id).where(
            RoutingRule.community_id == community.id).limit(1)):
        return 0
    by_code = {c.code: c.id for c in db.session.scalars(select(ReportCategory))}
    position = 0
    for codes, org_types, copy in ROUTING:
        for code in codes:
            position += 10
            rule = RoutingRule(community_id=community.id, position=position,
                               category_id=by_code[code], copy_grid_worker=copy,
                               description=f"{code} → {', '.join(org_types)}")
            rule.targets = [RoutingTarget(org_type=t) for t in org_types]
            db.session.add(rule)
    db.session.flush()
    return position // 10


def office_exists(community: Community) -> bool:
    """Whether the fallback target (the community office) exists."""
    return db.session.scalar(select(Org.id).where(
        Org.community_id == community.id, Org.type == OrgType.COMMUNITY_OFFICE)) is not None


@seed_step
def seed_reports_catalogue(community: Community) -> dict:
    """Demo step: the category catalogue and the community's routing rules (totals)."""
    ensure_categories()
    ensure_routing_rules(community)
    return {
        "report_categories": db.session.scalar(select(func.count(ReportCategory.id))),
        "routing_rules": db.session.scalar(select(func.count(RoutingRule.id)).where(
            RoutingRule.community_id == community.id)),
    }
