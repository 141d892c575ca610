"""Chinese wording of states and timeline steps, as the mini-program shows them."""

from __future__ import annotations

REPORT_STATUS_LABELS = {
    "submitted": "已提交", "routed": "已派单", "accepted": "已受理", "in_progress": "处理中",
    "resolved": "已处理", "closed": "已办结", "reopened": "重新处理", "rejected": "不予受理",
    "duplicate": "重复反映",
}
TICKET_STATUS_LABELS = {
    "new": "待受理", "accepted": "已受理", "in_progress": "处理中", "resolved": "已处理",
    "reopened": "被退回", "closed": "已办结", "rejected": "已退回", "transferred": "已转派",
    "duplicate": "重复",
}
EVENT_LABELS = {
    "submit": "提交了反映", "route": "已派发", "accept": "已受理", "start": "开始处理",
    "resolve": "已处理完毕", "reject": "不予受理", "transfer": "已转派", "close": "已办结",
    "reopen": "居民反馈未解决，重新处理", "mark_duplicate": "与已有反映重复",
    "comment": "留言", "urge": "居民催办", "escalate": "超时督办", "assign": "已指派",
    "follow": "关注", "feedback": "居民评价",
}


def event_label(event) -> str:
    """The Chinese wording of a timeline step."""
    return EVENT_LABELS.get(event.action, event.action)
