"""The benchmark's data set: one community at a realistic size, built quickly in PostgreSQL.

    .venv/bin/python -m bench.seed                      # 200,000 reports (the default scale)
    .venv/bin/python -m bench.seed --scale 1000000      # 1,000,000 reports
    .venv/bin/python -m bench.seed --scale 10000 --reseed

The database is `linli_bench` on 127.0.0.1 (BENCH_DATABASE_URL or --database-url to change it;
the generic DATABASE_URL is deliberately ignored, so a shell pointed at another database never
gets it rebuilt). It is created when missing, migrated to the latest schema, given the demo
base through `app.services.demo.seed_demo` (orgs, staff, categories, routing rules, dishes...),
then filled server-side with `INSERT ... SELECT generate_series(...)` statements - one
statement per table, never the ORM row by row:

- about 10,000 residents (28 % aged 60+) in households of new buildings;
- `--scale` reports (default 200,000) over two years, each with its tickets (routed as the
  community's routing rules say), timeline rows and the reporter's notification; old reports
  are closed, rejected or duplicates, the last days' are still being worked;
- 50,000 canteen orders on past menus with their items and feed events;
- 2,000 activities with their sign-ups, 20,000 bookings on past slots;
- one open canteen menu with plenty of portions for the order benchmark.

A comment on the database records the scale it holds; the same scale is not built twice unless
--reseed is given (another scale always rebuilds from an empty database).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import contextmanager
from datetime import date
from urllib.parse import urlsplit

import psycopg

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/linli_bench"
MARKER_PREFIX = "linli-bench"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
RESERVED_DATABASES = {"test", "postgres", "template0", "template1"}

DEFAULT_REPORTS = 200_000
RESIDENTS = 10_000
ORDERS = 50_000
ACTIVITIES = 2_000
BOOKINGS = 20_000
HISTORY_DAYS = 730  # reports cover two years
OPEN_WINDOW_DAYS = 6  # reports newer than this may still be open; older ones are finished
MENU_HISTORY_DAYS = 180
BOOKING_HISTORY_DAYS = 180
BENCH_MENU_PORTIONS = 1_000_000
TIMEZONE = "Asia/Shanghai"

# category code -> (weight, what residents write)
REPORT_TEXTS = {
    "garbage": (20, ["楼道口垃圾堆了好几天没人清", "垃圾箱满了，味道很大", "绿化带里扔了装修垃圾"]),
    "broken_facility": (15, ["单元门门禁坏了关不上", "楼道扶手松动，老人扶着不安全",
                             "健身器材螺丝脱落了"]),
    "lighting": (12, ["楼道灯不亮，晚上上下楼看不清", "路灯坏了一整排", "车棚的灯一直闪"]),
    "water_leak": (10, ["楼上渗水，天花板发霉", "水管爆裂，楼道积水", "下水道堵塞往外冒水"]),
    "illegal_parking": (10, ["电瓶车停在楼道里充电", "小区门口有车长期占道"]),
    "noise": (8, ["晚上十点后广场舞音响太响", "装修噪音从早上七点就开始"]),
    "greenery": (6, ["树枝压到电线了", "草坪好久没修剪，蚊子很多"]),
    "elevator_fault": (5, ["电梯门关不上", "电梯运行时有异响"]),
    "fire_lane_blocked": (4, ["消防通道被杂物堵住了"]),
    "other": (4, ["信箱坏了", "楼道里有很多小广告"]),
    "neighbour_dispute": (3, ["楼上邻居漏水不肯修"]),
    "elevator_installation": (2, ["我们楼想加装电梯，请问怎么申请"]),
    "public_space_change": (1, ["建议把闲置车棚改成老年活动室"]),
}
ACTIVITY_TITLES = ["智能手机课堂", "端午香囊手工课", "亲子绘本共读", "楼道清洁日", "太极拳晨练",
                   "健康讲座：高血压", "沪剧欣赏", "垃圾分类宣传", "书法兴趣班", "社区电影夜"]
ACTIVITY_PLACES = ["邻里中心一楼多功能厅", "社区睦邻点", "小区中心花园", "居委会二楼会议室"]
# booking service code -> start minutes of its slots each day (Shanghai time)
SLOT_STARTS = {
    "home_care": [h * 60 for h in range(9, 17)],
    "day_care": [8 * 60, 13 * 60],
    "childcare": [9 * 60, 14 * 60],
    "study_room": [9 * 60, 11 * 60, 13 * 60, 15 * 60],
    "egov_station": [m for m in range(9 * 60, 17 * 60, 15) if not 11 * 60 + 30 <= m < 13 * 60],
}


def log(message: str) -> None:
    """One progress line, flushed at once."""
    print(message, flush=True)


@contextmanager
def timed(label: str):
    """Log how long a step took."""
    start = time.perf_counter()
    yield
    log(f"  {label:<34} {time.perf_counter() - start:6.1f} s")


# --- the database itself ----------------------------------------------------------------------


def database_url(explicit: str | None = None) -> str:
    """The benchmark database's SQLAlchemy URL; refuses remote hosts and shared databases."""
    url = explicit or os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgresql"):
        raise SystemExit(f"the benchmark needs PostgreSQL, not {url!r}")
    if parts.hostname not in LOCAL_HOSTS:
        raise SystemExit(f"the benchmark only runs against this machine, not {parts.hostname!r}")
    if parts.path.lstrip("/") in RESERVED_DATABASES:
        raise SystemExit(f"refusing to rebuild the shared database {parts.path.lstrip('/')!r}")
    return url


def libpq_url(url: str, dbname: str | None = None) -> str:
    """The URL psycopg understands (optionally naming another database on the same server)."""
    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://", 1))
    path = f"/{dbname}" if dbname else parts.path
    return parts._replace(path=path).geturl()


def db_name(url: str) -> str:
    """The database name in a URL."""
    return urlsplit(url).path.lstrip("/")


def read_marker(url: str) -> str | None:
    """The comment recording what the database holds (None when it does not exist)."""
    with psycopg.connect(libpq_url(url, "postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (db_name(url),)).fetchone()
    if row is None:
        return None
    return row[0] or ""


def marker_for(reports: int) -> str:
    """The comment of a database seeded at `reports` reports."""
    return f"{MARKER_PREFIX} reports={reports}"


def recreate_database(url: str) -> None:
    """Drop the benchmark database if it exists and create it empty."""
    name = db_name(url)
    with psycopg.connect(libpq_url(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def write_marker(url: str, reports: int) -> None:
    """Record the seeded scale on the database."""
    with psycopg.connect(libpq_url(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'COMMENT ON DATABASE "{db_name(url)}" IS '
                     f"'{marker_for(reports)} seeded={date.today().isoformat()}'")


def seeded_reports(url: str) -> int | None:
    """How many reports the database was seeded with, if it was."""
    marker = read_marker(url) or ""
    if not marker.startswith(MARKER_PREFIX + " reports="):
        return None
    return int(marker.split()[1].split("=")[1])


# --- the app's own base ------------------------------------------------------------------------


def bench_app(url: str):
    """The app on the benchmark database (in-process Redis: seeding enqueues nothing)."""
    from app import create_app

    return create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None})


def migrate(url: str) -> None:
    """Upgrade the schema to the latest revision (also on a database seeded earlier)."""
    from flask_migrate import upgrade

    from app.extensions import db

    app = bench_app(url)
    with app.app_context(), timed("migrations"):
        upgrade(revision="heads")
        db.engine.dispose()


def seed_demo_base(url: str) -> dict:
    """The demo community the bulk rows hang on (orgs, staff, categories, rules, dishes...)."""
    from app.extensions import db
    from app.services.demo import seed_demo

    app = bench_app(url)
    with app.app_context(), timed("demo base (seed_demo)"):
        summary = seed_demo()
        db.engine.dispose()
    return summary


# --- bulk rows -----------------------------------------------------------------------------------


def ids(conn: psycopg.Connection) -> dict:
    """The demo rows the bulk data hangs on: community, orgs, staff users."""
    row = conn.execute("SELECT id, center_lat, center_lng FROM communities WHERE code = 'zpq'"
                       ).fetchone()
    found = {"community": row[0], "lat": row[1], "lng": row[2]}
    for code, key in (("zpq-property", "property"), ("zpq-office", "office"),
                      ("zpq-canteen", "canteen"), ("zpq-care", "care")):
        found[key] = conn.execute("SELECT id FROM orgs WHERE code = %s", (code,)).fetchone()[0]
    for username in ("office", "canteen"):
        found[f"{username}_user"] = conn.execute(
            "SELECT id FROM users WHERE username = %s", (username,)).fetchone()[0]
    found["year"] = date.today().year
    return found


def name_parts() -> tuple[list[str], list[str]]:
    """Surnames and given names from the demo's own lists."""
    from app.services.demo import GIVEN_NAMES, SURNAMES

    return list(SURNAMES), sorted({n for names in GIVEN_NAMES.values() for n in names})


def insert_residents(conn, ctx: dict) -> int:
    """Residents up to RESIDENTS in all, in households of new buildings; returns how many."""
    have = conn.execute("SELECT count(*) FROM users WHERE community_id = %s AND openid IS NOT NULL",
                        (ctx["community"],)).fetchone()[0]
    count = max(0, RESIDENTS - have)
    surnames, given = name_parts()
    conn.execute("""
        INSERT INTO users (community_id, wx_appid, openid, display_name, phone, birth_year,
                           is_active, created_at)
        SELECT %(c)s, %(appid)s, 'bench-openid-' || g,
               (%(sn)s::text[])[1 + floor(random() * cardinality(%(sn)s::text[]))::int]
               || (%(gn)s::text[])[1 + floor(random() * cardinality(%(gn)s::text[]))::int],
               CASE WHEN random() < 0.65 THEN '1' || (30 + floor(random() * 60)::int)::text
                    || lpad(floor(random() * 1e8)::bigint::text, 8, '0') END,
               CASE WHEN random() < 0.28 THEN %(year)s - 60 - floor(random() * 35)::int
                    ELSE %(year)s - 18 - floor(random() * 42)::int END,
               true, now() - random() * interval '900 days'
        FROM generate_series(1, %(n)s) AS g""",
                 {"c": ctx["community"], "appid": wx_appid(), "sn": surnames, "gn": given,
                  "year": ctx["year"], "n": count})
    households = -(-count * 2 // 5)  # about 2.5 residents per household
    buildings = -(-households // 24)  # 2 units x 6 floors x 2 rooms
    building0 = conn.execute("SELECT coalesce(max(id), 0) FROM buildings").fetchone()[0]
    conn.execute("""
        INSERT INTO buildings (community_id, micro_grid_id, number, name, units, lat, lng)
        SELECT %(c)s, mg.ids[1 + mod(g, cardinality(mg.ids))], (100 + g)::text,
               (100 + g)::text || '号楼', 2, %(lat)s + (random() - 0.5) * 0.006,
               %(lng)s + (random() - 0.5) * 0.007
        FROM generate_series(1, %(n)s) AS g,
             (SELECT array_agg(id ORDER BY id) AS ids FROM micro_grids
               WHERE community_id = %(c)s) AS mg""",
                 {"c": ctx["community"], "lat": ctx["lat"], "lng": ctx["lng"], "n": buildings})
    conn.execute("""
        INSERT INTO households (community_id, building_id, unit, room)
        SELECT %(c)s, b.id, u::text, (f * 100 + r)::text
        FROM buildings b, generate_series(1, 2) u, generate_series(1, 6) f,
             generate_series(1, 2) r
        WHERE b.id > %(b0)s ORDER BY b.id, u, f, r""", {"c": ctx["community"], "b0": building0})
    conn.execute("""
        WITH u AS (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM users
                    WHERE openid LIKE 'bench-openid-%%'),
             h AS (SELECT array_agg(id ORDER BY id) AS ids FROM households
                    WHERE building_id > %(b0)s)
        INSERT INTO household_members (community_id, household_id, user_id, relation, status,
                                       decided_by_id, decided_at, created_at)
        SELECT %(c)s, h.ids[1 + mod(u.rn - 1, cardinality(h.ids))], u.id,
               (ARRAY['owner', 'spouse', 'child', 'parent', 'relative'])[
                   1 + least(4, (u.rn - 1) / cardinality(h.ids))],
               'approved', %(office_user)s, now() - interval '100 days',
               now() - interval '120 days'
        FROM u, h""", {"c": ctx["community"], "b0": building0,
                       "office_user": ctx["office_user"]})
    return count


def wx_appid() -> str:
    """The mini-program's appid, as WeChat login stores it on residents."""
    from app.config import load_config

    return load_config()["WX_APPID"]


def report_texts(conn) -> tuple[list[str], list[int]]:
    """Descriptions and their category ids, repeated by weight."""
    codes = dict(conn.execute("SELECT code, id FROM report_categories").fetchall())
    texts, cats = [], []
    for code, (weight, phrases) in REPORT_TEXTS.items():
        for i in range(weight):
            texts.append(phrases[i % len(phrases)])
            cats.append(codes[code])
    return texts, cats


def routing_map(conn, community_id: int) -> tuple[list[int], list[int], list[bool]]:
    """(category, org, copy to grid worker) triples, as the first matching rule routes them."""
    orgs_by_type: dict[str, list[int]] = {}
    for org_id, org_type in conn.execute(
            "SELECT id, type FROM orgs WHERE community_id = %s ORDER BY id", (community_id,)):
        orgs_by_type.setdefault(org_type, []).append(org_id)
    cats, orgs, copies = [], [], []
    routed: set[int] = set()
    rows = conn.execute("""
        SELECT r.category_id, r.copy_grid_worker, t.org_id, t.org_type
        FROM routing_rules r JOIN routing_targets t ON t.rule_id = r.id
        WHERE r.community_id = %s AND r.is_active AND r.micro_grid_id IS NULL
          AND r.building_id IS NULL AND r.category_id IS NOT NULL
        ORDER BY r.position, t.id""", (community_id,)).fetchall()
    first_rule: dict[int, bool] = {}
    for category_id, copy, org_id, org_type in rows:
        first_rule.setdefault(category_id, copy)
        for target in ([org_id] if org_id else orgs_by_type.get(org_type, [])):
            if (category_id, target) not in routed:
                routed.add((category_id, target))
                cats.append(category_id)
                orgs.append(target)
                copies.append(first_rule[category_id])
    covered = {c for c, _ in routed}
    for (category_id,) in conn.execute("SELECT id FROM report_categories"):
        if category_id not in covered:  # unmatched reports go to the community office
            cats.append(category_id)
            orgs.append(orgs_by_type["community_office"][0])
            copies.append(False)
    return cats, orgs, copies


def insert_reports(conn, ctx: dict, count: int) -> int:
    """`count` reports over HISTORY_DAYS, oldest first; returns the last id before them."""
    report0 = conn.execute("SELECT coalesce(max(id), 0) FROM reports").fetchone()[0]
    texts, cats = report_texts(conn)
    conn.execute("""
        WITH people AS (SELECT array_agg(id ORDER BY id) AS ids FROM users
                         WHERE community_id = %(c)s AND openid IS NOT NULL),
             bl AS (SELECT array_agg(id ORDER BY id) AS ids, array_agg(name ORDER BY id) AS names
                      FROM buildings WHERE community_id = %(c)s),
             base AS (
               SELECT g, 1 + floor(random() * cardinality(%(texts)s::text[]))::int AS d,
                      1 + floor(random() * cardinality(bl.ids))::int AS b,
                      1 + floor(random() * cardinality(people.ids))::int AS p,
                      random() AS u, random() AS v, random() AS w,
                      now() - make_interval(days => %(days)s) * (1 - g::float8 / %(n)s)
                            - random() * interval '20 minutes' AS created
               FROM generate_series(1, %(n)s) AS g, bl, people),
             s AS (
               SELECT base.*, CASE
                 WHEN created < now() - make_interval(days => %(open_days)s) THEN CASE
                   WHEN u < 0.89 THEN 'closed' WHEN u < 0.94 THEN 'rejected'
                   WHEN u < 0.97 THEN 'duplicate' ELSE 'in_progress' END
                 ELSE CASE
                   WHEN u < 0.25 THEN 'routed' WHEN u < 0.45 THEN 'accepted'
                   WHEN u < 0.65 THEN 'in_progress' WHEN u < 0.85 THEN 'resolved'
                   ELSE 'closed' END END AS status
               FROM base),
             t AS (
               SELECT s.*, CASE WHEN status IN ('resolved', 'closed') THEN
                        least(now() - interval '1 minute',
                              created + (2 + v * 70) * interval '1 hour') END AS resolved
               FROM s)
        INSERT INTO reports (community_id, reporter_id, category_id, description, building_id,
                             location_text, extra, status, source, rejected_reason, fixed,
                             rating, feedback_comment, feedback_at, created_at, updated_at,
                             resolved_at, closed_at)
        SELECT %(c)s, people.ids[p], (%(cats)s::int[])[d], (%(texts)s::text[])[d], bl.ids[b],
               bl.names[b] || (1 + mod(g, 2))::text || '单元', '{}', status, 'miniprogram',
               CASE WHEN status = 'rejected' THEN '不属于本单位职责范围，已告知居民' END,
               CASE WHEN status = 'closed' AND w < 0.5 THEN true END,
               CASE WHEN status = 'closed' AND w < 0.5 THEN 3 + floor(w * 6)::int END,
               CASE WHEN status = 'closed' AND w < 0.5 THEN '处理得很及时，谢谢' END,
               CASE WHEN status = 'closed' AND w < 0.5 THEN
                    least(now(), resolved + w * interval '2 days') END,
               created,
               coalesce(CASE WHEN status = 'closed' THEN
                             least(now(), resolved + w * interval '3 days') END,
                        resolved, least(now(), created + interval '1 hour')),
               resolved,
               CASE WHEN status = 'closed' THEN least(now(), resolved + w * interval '3 days')
                    WHEN status IN ('rejected', 'duplicate') THEN created + interval '3 hours'
               END
        FROM t, bl, people ORDER BY g""",
                 {"c": ctx["community"], "texts": texts, "cats": cats, "n": count,
                  "days": HISTORY_DAYS, "open_days": OPEN_WINDOW_DAYS})
    conn.execute("""UPDATE reports SET duplicate_of_id = id - 17
                    WHERE id > %(r0)s AND status = 'duplicate' AND id - 17 > %(r0)s""",
                 {"r0": report0})
    return report0


def insert_tickets(conn, ctx: dict, report0: int) -> None:
    """The reports' tickets, one per routed org, in the state their report shows."""
    cats, orgs, copies = routing_map(conn, ctx["community"])
    conn.execute("""
        WITH m AS (SELECT * FROM unnest(%(cats)s::int[], %(orgs)s::int[], %(copies)s::bool[])
                     AS m(category_id, org_id, copy)),
             t AS (
               SELECT r.id AS report_id, r.community_id, m.org_id, r.category_id, r.building_id,
                      b.micro_grid_id, CASE WHEN m.copy THEN mg.grid_worker_id END AS grid_worker,
                      CASE r.status WHEN 'routed' THEN 'new' ELSE r.status END AS status,
                      r.created_at + interval '2 seconds' AS created,
                      c.sla_hours, r.resolved_at, r.closed_at, random() AS u
               FROM reports r
               JOIN m ON m.category_id = r.category_id
               JOIN report_categories c ON c.id = r.category_id
               LEFT JOIN buildings b ON b.id = r.building_id
               LEFT JOIN micro_grids mg ON mg.id = b.micro_grid_id
               WHERE r.id > %(r0)s),
             d AS (
               SELECT t.*, created + least(interval '2 hours',
                                           sla_hours * interval '15 minutes') AS accept_by,
                      created + sla_hours * interval '1 hour' AS expected,
                      CASE WHEN status IN ('accepted', 'in_progress') THEN
                             created + (now() - created) * (0.05 + 0.25 * u)
                           WHEN status IN ('resolved', 'closed') THEN
                             created + (resolved_at - created) * 0.25 END AS accepted
               FROM t),
             o AS (
               SELECT d.*, (status = 'new' AND accept_by < now())
                           OR (status IN ('new', 'accepted', 'in_progress')
                               AND expected < now()) AS late
               FROM d)
        INSERT INTO tickets (community_id, report_id, org_id, category_id, building_id,
                             micro_grid_id, grid_worker_id, status, accept_by, expected_at,
                             accepted_at, resolved_at, closed_at, overdue, escalated_at,
                             created_at, updated_at)
        SELECT community_id, report_id, org_id, category_id, building_id, micro_grid_id,
               grid_worker, status, accept_by, expected, accepted, resolved_at,
               CASE WHEN status IN ('closed', 'rejected', 'duplicate') THEN closed_at END,
               late OR coalesce(resolved_at > expected, false),
               CASE WHEN late THEN least(now(), expected) + interval '5 minutes' END,
               created, coalesce(closed_at, resolved_at, accepted, created)
        FROM o ORDER BY report_id, org_id""",
                 {"cats": cats, "orgs": orgs, "copies": copies, "r0": report0})


def insert_report_events(conn, report0: int) -> None:
    """Each report's timeline: submit, then every ticket's route and later steps."""
    conn.execute("""
        INSERT INTO report_events (report_id, ticket_id, actor_id, org_id, action, from_status,
                                   to_status, note, public, data, created_at)
        SELECT id, NULL, reporter_id, NULL, 'submit', NULL, 'submitted', '', true, '{}',
               created_at
        FROM reports WHERE id > %(r0)s ORDER BY id""", {"r0": report0})
    conn.execute("""
        WITH t AS (
          SELECT t.*, o.name AS org_name,
                 CASE t.status WHEN 'new' THEN 0 WHEN 'rejected' THEN 0 WHEN 'duplicate' THEN 0
                      WHEN 'accepted' THEN 1 WHEN 'in_progress' THEN 2 WHEN 'resolved' THEN 3
                      WHEN 'closed' THEN 4 END AS progress
          FROM tickets t JOIN orgs o ON o.id = t.org_id WHERE t.report_id > %(r0)s)
        INSERT INTO report_events (report_id, ticket_id, actor_id, org_id, action, from_status,
                                   to_status, note, public, data, created_at)
        SELECT t.report_id, t.id, NULL::int, t.org_id, s.action, s.from_status, s.to_status, s.note,
               true, '{}'::json, s.at
        FROM t CROSS JOIN LATERAL (VALUES
            (0, 'route', NULL, 'new', '已派发给' || t.org_name, t.created_at),
            (1, 'accept', 'new', 'accepted', '', t.accepted_at),
            (2, 'start', 'accepted', 'in_progress', '',
             t.accepted_at + (coalesce(t.resolved_at, now()) - t.accepted_at) * 0.3),
            (3, 'resolve', 'in_progress', 'resolved', '已处理完毕', t.resolved_at),
            (4, 'close', 'resolved', 'closed', '', t.closed_at)
          ) AS s(step, action, from_status, to_status, note, at)
        WHERE s.step <= t.progress
        UNION ALL
        SELECT t.report_id, t.id, NULL::int, t.org_id,
               CASE t.status WHEN 'rejected' THEN 'reject' ELSE 'mark_duplicate' END,
               'new', t.status, '已退回', true, '{}'::json, t.closed_at
        FROM t WHERE t.status IN ('rejected', 'duplicate')
        ORDER BY 1, 11""", {"r0": report0})


def insert_report_notifications(conn, report0: int) -> None:
    """The reporter's in-app notice of each report's latest step."""
    conn.execute("""
        INSERT INTO notifications (user_id, kind, title, body, data, dedupe_key, wx_status,
                                   read_at, created_at)
        SELECT reporter_id, 'report_update', '您的随手拍有新进展',
               CASE status WHEN 'closed' THEN '问题已办结，感谢您的反映'
                           WHEN 'resolved' THEN '问题已处理，请确认是否解决'
                           WHEN 'rejected' THEN '您的报告未被受理' ELSE '已派发给处理单位' END,
               json_build_object('report_id', id), 'bench-report-' || id, 'sent',
               CASE WHEN created_at < now() - interval '3 days' THEN updated_at END, updated_at
        FROM reports WHERE id > %(r0)s AND reporter_id IS NOT NULL ORDER BY id""",
                 {"r0": report0})


def insert_canteen(conn, ctx: dict) -> None:
    """Past menus with their items, ORDERS orders, their items and feed events."""
    menu0 = conn.execute("SELECT coalesce(max(id), 0) FROM canteen_menus").fetchone()[0]
    params = {"c": ctx["community"], "org": ctx["canteen"], "user": ctx["canteen_user"],
              "days": MENU_HISTORY_DAYS, "tz": TIMEZONE, "m0": menu0, "n": ORDERS}
    conn.execute("""
        INSERT INTO canteen_menus (community_id, org_id, date, meal, cutoff_at, delivery_start,
                                   delivery_end, created_by_id, created_at)
        SELECT %(c)s, %(org)s, d, m.meal, (d + m.cutoff) AT TIME ZONE %(tz)s,
               (d + m.starts) AT TIME ZONE %(tz)s, (d + m.ends) AT TIME ZONE %(tz)s, %(user)s,
               (d - 1 + time '16:00') AT TIME ZONE %(tz)s
        FROM generate_series(1, %(days)s) AS k,
             LATERAL (SELECT (now() AT TIME ZONE %(tz)s)::date - k AS d) AS day,
             (VALUES (1, 'breakfast', time '06:30', time '07:00', time '08:30'),
                     (2, 'lunch', time '09:30', time '11:00', time '12:30'),
                     (3, 'dinner', time '15:00', time '16:30', time '18:00'))
               AS m(n, meal, cutoff, starts, ends)
        ORDER BY d, m.n""", params)
    conn.execute("""
        WITH md AS (SELECT m.meal, array_agg(DISTINCT i.dish_id) AS dishes
                      FROM canteen_menus m JOIN canteen_menu_items i ON i.menu_id = m.id
                     WHERE m.id <= %(m0)s AND m.org_id = %(org)s GROUP BY m.meal)
        INSERT INTO canteen_menu_items (menu_id, dish_id, portions_total, portions_left)
        SELECT m.id, md.dishes[1 + mod(m.id + k, cardinality(md.dishes))], 200, 200
        FROM canteen_menus m JOIN md ON md.meal = m.meal,
             generate_series(0, 4) AS k
        WHERE m.id > %(m0)s AND k < cardinality(md.dishes)""", params)
    insert_orders(conn, params)


def approved_members(conn, community_id: int) -> int:
    """How many approved household memberships the community has (diners, bookers)."""
    return conn.execute(
        "SELECT count(*) FROM household_members WHERE community_id = %s AND status = 'approved'",
        (community_id,)).fetchone()[0]


def insert_orders(conn, params: dict) -> None:
    """ORDERS online orders on the past menus, oldest first, finished or cancelled."""
    order0 = conn.execute("SELECT coalesce(max(id), 0) FROM canteen_orders").fetchone()[0]
    members = approved_members(conn, params["c"])
    menus = conn.execute("SELECT count(*) FROM canteen_menus WHERE id > %s",
                         (params["m0"],)).fetchone()[0]
    params = {**params, "o0": order0, "members": members, "menus": menus}
    conn.execute("""
        WITH menus AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM canteen_menus
                        WHERE id > %(m0)s),
             members AS (SELECT row_number() OVER (ORDER BY id) AS p, user_id, household_id
                           FROM household_members
                          WHERE community_id = %(c)s AND status = 'approved'),
             picks AS (  -- a CTE with random(): materialised, so each row keeps its draws
               SELECT g, ((g - 1) * %(menus)s) / %(n)s AS menu_n,
                      1 + floor(random() * %(members)s)::int AS p, random() AS u, random() AS v
               FROM generate_series(1, %(n)s) AS g),
             o AS (
               SELECT picks.*, m.id AS menu_id, m.org_id, m.date, m.meal, m.cutoff_at,
                      m.delivery_start, m.delivery_end, mem.user_id, mem.household_id AS home,
                      usr.display_name, usr.birth_year,
                      CASE WHEN u < 0.4 THEN 'dine_in' WHEN u < 0.7 THEN 'pickup'
                           ELSE 'delivery' END AS fulfilment,
                      v < 0.05 AS cancelled
               FROM picks JOIN menus ON menus.n = picks.menu_n
               JOIN canteen_menus m ON m.id = menus.id
               JOIN members mem ON mem.p = picks.p
               JOIN users usr ON usr.id = mem.user_id)
        INSERT INTO canteen_orders (community_id, org_id, menu_id, menu_date, meal, channel,
                                    fulfilment, status, placed_by_id, diner_id, diner_name,
                                    diner_age, household_id, address, note, pickup_code,
                                    standard_total_fen, total_fen, created_at, updated_at,
                                    accepted_at, ready_at, finished_at, cancelled_at)
        SELECT %(c)s, o.org_id, o.menu_id, o.date, o.meal, 'online', o.fulfilment,
               CASE WHEN cancelled THEN 'cancelled' WHEN fulfilment = 'delivery'
                    THEN 'delivered' ELSE 'picked_up' END,
               o.user_id, o.user_id, o.display_name,
               extract(year FROM o.date)::int - o.birth_year,
               CASE WHEN fulfilment = 'delivery' THEN o.home END,
               CASE WHEN fulfilment = 'delivery' THEN
                    b.number || '号楼' || h.unit || '单元' || h.room ELSE '' END,
               '',
               CASE WHEN fulfilment = 'pickup' THEN
                    (1000 + row_number() OVER (PARTITION BY o.menu_id, fulfilment
                                               ORDER BY g))::text END,
               0, 0, o.cutoff_at - (1 + o.v * 20) * interval '1 hour',
               o.delivery_end,
               CASE WHEN NOT cancelled THEN o.cutoff_at + interval '5 minutes' END,
               CASE WHEN NOT cancelled THEN o.delivery_start - interval '10 minutes' END,
               CASE WHEN NOT cancelled THEN
                    o.delivery_start + (o.delivery_end - o.delivery_start) * o.u END,
               CASE WHEN cancelled THEN o.cutoff_at - interval '30 minutes' END
        FROM o JOIN households h ON h.id = o.home JOIN buildings b ON b.id = h.building_id
        ORDER BY g""", params)
    with timed("  order lines"):
        insert_order_lines(conn, params)
    with timed("  order events"):
        insert_order_events(conn, params)


def insert_order_lines(conn, params: dict) -> None:
    """One or two dishes per order; then the orders' totals and the menus' portions left."""
    conn.execute("""
        WITH mi AS (SELECT i.id, i.menu_id, i.dish_id, d.name, d.price_fen,
                           row_number() OVER (PARTITION BY i.menu_id ORDER BY i.id) AS pos,
                           count(*) OVER (PARTITION BY i.menu_id) AS n
                      FROM canteen_menu_items i JOIN canteen_dishes d ON d.id = i.dish_id
                     WHERE i.menu_id > %(m0)s)
        INSERT INTO canteen_order_items (order_id, menu_item_id, dish_id, dish_name, qty,
                                         standard_price_fen, unit_price_fen)
        SELECT o.id, mi.id, mi.dish_id, mi.name, 1 + (mod(o.id, 4) = 0)::int, mi.price_fen,
               mi.price_fen
        FROM canteen_orders o, generate_series(0, 1) AS k, mi
        WHERE o.id > %(o0)s AND (k = 0 OR mod(o.id, 3) = 0) AND mi.menu_id = o.menu_id
          AND mi.pos = 1 + mod(o.id + k, mi.n)
        ORDER BY o.id, k""", params)
    conn.execute("""
        UPDATE canteen_orders o SET standard_total_fen = s.total, total_fen = s.total
        FROM (SELECT order_id, sum(qty * unit_price_fen) AS total FROM canteen_order_items
               WHERE order_id > %(o0)s GROUP BY order_id) AS s
        WHERE o.id = s.order_id""", params)
    conn.execute("""
        UPDATE canteen_menu_items i SET portions_left = i.portions_total - s.taken
        FROM (SELECT oi.menu_item_id, sum(oi.qty) AS taken
                FROM canteen_order_items oi JOIN canteen_orders o ON o.id = oi.order_id
               WHERE o.id > %(o0)s AND o.status <> 'cancelled' GROUP BY oi.menu_item_id) AS s
        WHERE i.id = s.menu_item_id""", params)


def insert_order_events(conn, params: dict) -> None:
    """Each order's steps in the kitchen's feed, written by this one transaction."""
    conn.execute("""
        INSERT INTO canteen_order_events (txid, org_id, order_id, actor_id, action, from_status,
                                          to_status, note, data, created_at)
        SELECT pg_current_xact_id()::text::bigint, o.org_id, o.id, s.actor, s.action,
               s.from_status, s.to_status, '', '{}'::json, s.at
        FROM canteen_orders o CROSS JOIN LATERAL (VALUES
            (0, 'place', NULL, 'placed', o.placed_by_id, o.created_at, true),
            (1, 'cancel', 'placed', 'cancelled', o.placed_by_id, o.cancelled_at,
             o.status = 'cancelled'),
            (2, 'accept', 'placed', 'accepted', %(user)s, o.accepted_at, o.status <> 'cancelled'),
            (3, 'start', 'accepted', 'preparing', %(user)s, o.accepted_at + interval '20 minutes',
             o.status <> 'cancelled'),
            (4, 'ready', 'preparing', 'ready', %(user)s, o.ready_at, o.status <> 'cancelled'),
            (5, 'pick_up', 'ready', 'picked_up', %(user)s, o.finished_at,
             o.status = 'picked_up'),
            (6, 'dispatch', 'ready', 'out_for_delivery', %(user)s,
             o.ready_at + interval '5 minutes', o.status = 'delivered'),
            (7, 'deliver', 'out_for_delivery', 'delivered', %(user)s, o.finished_at,
             o.status = 'delivered')
          ) AS s(step, action, from_status, to_status, actor, at, applies)
        WHERE o.id > %(o0)s AND s.applies
        ORDER BY o.id, s.step""", params)


def insert_activities(conn, ctx: dict) -> None:
    """ACTIVITIES activities (most past, some upcoming) with their sign-ups and timeline."""
    activity0 = conn.execute("SELECT coalesce(max(id), 0) FROM activities").fetchone()[0]
    params = {"c": ctx["community"], "orgs": [ctx["office"], ctx["care"]],
              "user": ctx["office_user"], "titles": ACTIVITY_TITLES, "places": ACTIVITY_PLACES,
              "n": ACTIVITIES, "a0": activity0}
    conn.execute("""
        INSERT INTO activities (community_id, org_id, created_by_id, title, description, place,
                                starts_at, ends_at, signup_opens_at, signup_closes_at, capacity,
                                seats_taken, signup_counter, max_party_size, audience_mask,
                                checkin_required, status, cancel_reason, cancelled_at,
                                created_at, updated_at)
        SELECT %(c)s, (%(orgs)s::int[])[1 + mod(g, 2)], %(user)s,
               (%(titles)s::text[])[1 + mod(g, cardinality(%(titles)s::text[]))],
               '欢迎邻居们报名参加',
               (%(places)s::text[])[1 + mod(g, cardinality(%(places)s::text[]))],
               st, st + interval '2 hours', st - interval '14 days', st - interval '1 hour',
               10 + mod(g, 31), 0, 0, 1 + (mod(g, 3) = 0)::int,
               (ARRAY[1, 2, 4, 8, 5, 6])[1 + mod(g, 6)], true,
               CASE WHEN mod(g, 37) = 0 THEN 'cancelled' ELSE 'published' END,
               CASE WHEN mod(g, 37) = 0 THEN '天气原因取消' END,
               CASE WHEN mod(g, 37) = 0 THEN st - interval '1 day' END,
               st - interval '15 days', st - interval '15 days'
        FROM (SELECT g, date_trunc('hour', now() - interval '700 days'
                     + (g::float8 / %(n)s) * interval '730 days') AS st
                FROM generate_series(1, %(n)s) AS g) AS a
        ORDER BY g""", params)
    conn.execute("""
        WITH people AS (SELECT array_agg(id ORDER BY id) AS ids FROM users
                         WHERE openid LIKE 'bench-openid-%%')
        INSERT INTO activity_signups (community_id, activity_id, user_id, role, party_size,
                                      member_ids, status, queue_no, cancel_source, cancelled_at,
                                      checked_in_at, confirmed_at, created_at, updated_at)
        SELECT a.community_id, a.id,
               people.ids[1 + mod(a.id * 7919 + k * 104729, cardinality(people.ids))],
               'participant', 1, '[]',
               CASE WHEN a.status = 'cancelled' THEN 'cancelled'
                    WHEN a.ends_at < now() AND mod(k, 5) <> 0 THEN 'checked_in'
                    ELSE 'confirmed' END,
               k, CASE WHEN a.status = 'cancelled' THEN 'activity' END,
               CASE WHEN a.status = 'cancelled' THEN a.cancelled_at END,
               CASE WHEN a.ends_at < now() AND mod(k, 5) <> 0 AND a.status <> 'cancelled'
                    THEN a.starts_at - interval '5 minutes' END,
               a.signup_opens_at + k * interval '10 minutes',
               a.signup_opens_at + k * interval '10 minutes',
               a.signup_opens_at + k * interval '10 minutes'
        FROM activities a, people, generate_series(1, 15) AS k
        WHERE a.id > %(a0)s AND k <= least(a.capacity, 4 + mod(a.id, 12))
        ORDER BY a.id, k""", params)
    conn.execute("""
        UPDATE activities a SET seats_taken = s.seats, signup_counter = s.signups
        FROM (SELECT activity_id, count(*) AS signups,
                     coalesce(sum(party_size) FILTER (WHERE status IN ('confirmed', 'checked_in')),
                              0) AS seats
                FROM activity_signups WHERE activity_id > %(a0)s GROUP BY activity_id) AS s
        WHERE a.id = s.activity_id""", params)
    conn.execute("""
        INSERT INTO activity_events (activity_id, signup_id, actor_id, action, from_status,
                                     to_status, note, data, created_at)
        SELECT activity_id, id, user_id, 'signup', NULL, 'confirmed', '', '{}', created_at
        FROM activity_signups WHERE activity_id > %(a0)s ORDER BY id""", params)


def insert_bookings(conn, ctx: dict) -> None:
    """Past slots of every service and BOOKINGS bookings on them, with their timeline."""
    slot0 = conn.execute("SELECT coalesce(max(id), 0) FROM booking_slots").fetchone()[0]
    booking0 = conn.execute("SELECT coalesce(max(id), 0) FROM bookings").fetchone()[0]
    services = dict(conn.execute(
        "SELECT code, id FROM booking_services WHERE community_id = %s", (ctx["community"],)))
    sids, minutes = [], []
    for code, starts in SLOT_STARTS.items():
        if code in services:
            sids += [services[code]] * len(starts)
            minutes += starts
    members = approved_members(conn, ctx["community"])
    params = {"c": ctx["community"], "sids": sids, "minutes": minutes, "tz": TIMEZONE,
              "members": members,
              "days": BOOKING_HISTORY_DAYS, "s0": slot0, "b0": booking0, "n": BOOKINGS}
    conn.execute("""
        INSERT INTO booking_slots (service_id, starts_at, capacity, booked, blocked, updated_at)
        SELECT s.sid, ((now() AT TIME ZONE %(tz)s)::date - k + s.minute * interval '1 minute')
                      AT TIME ZONE %(tz)s, sv.capacity, 0, false, now()
        FROM generate_series(1, %(days)s) AS k,
             unnest(%(sids)s::int[], %(minutes)s::int[]) AS s(sid, minute)
        JOIN booking_services sv ON sv.id = s.sid
        ORDER BY 2, 1""", params)
    conn.execute("""
        WITH cand AS (
               SELECT sl.id AS slot_id, sl.service_id, sl.starts_at, sv.duration_minutes
               FROM booking_slots sl JOIN booking_services sv ON sv.id = sl.service_id,
                    generate_series(1, sl.capacity) AS k
               WHERE sl.id > %(s0)s ORDER BY random() LIMIT %(n)s),
             members AS (SELECT row_number() OVER (ORDER BY id) AS p, user_id, household_id
                           FROM household_members
                          WHERE community_id = %(c)s AND status = 'approved'),
             picked AS (SELECT cand.*, 1 + floor(random() * %(members)s)::int AS p,
                               random() AS u FROM cand),
             b AS (SELECT picked.*, members.user_id, members.household_id
                     FROM picked JOIN members ON members.p = picked.p)
        INSERT INTO bookings (community_id, service_id, slot_id, kind, status, user_id,
                              for_user_id, household_id, starts_at, ends_at, note, address,
                              version, confirmed_at, completed_at, cancelled_at, cancel_reason,
                              created_at, updated_at)
        SELECT %(c)s, service_id, slot_id, 'slot',
               CASE WHEN u < 0.82 THEN 'completed' WHEN u < 0.94 THEN 'cancelled'
                    ELSE 'no_show' END,
               user_id, user_id, household_id, starts_at,
               starts_at + duration_minutes * interval '1 minute', '', '', 1,
               starts_at - (1 + u * 4) * interval '1 day',
               CASE WHEN u < 0.82 THEN starts_at + duration_minutes * interval '1 minute' END,
               CASE WHEN u >= 0.82 AND u < 0.94 THEN starts_at - interval '6 hours' END,
               CASE WHEN u >= 0.82 AND u < 0.94 THEN '临时有事' END,
               starts_at - (1 + u * 4) * interval '1 day', starts_at
        FROM b ORDER BY starts_at, slot_id""", params)
    conn.execute("""
        UPDATE booking_slots sl SET booked = s.n
        FROM (SELECT slot_id, count(*) AS n FROM bookings
               WHERE id > %(b0)s AND status <> 'cancelled' GROUP BY slot_id) AS s
        WHERE sl.id = s.slot_id""", params)
    conn.execute("""
        INSERT INTO booking_events (booking_id, actor_id, action, from_status, to_status, note,
                                    data, created_at)
        SELECT b.id, s.actor, s.action, s.from_status, s.to_status, '', '{}'::json, s.at
        FROM bookings b CROSS JOIN LATERAL (VALUES
            (0, 'book', NULL, 'confirmed', b.user_id, b.created_at),
            (1, CASE b.status WHEN 'completed' THEN 'complete' WHEN 'cancelled' THEN 'cancel'
                              ELSE 'no_show' END,
             'confirmed', b.status, NULL::int, coalesce(b.completed_at, b.cancelled_at,
                                                        b.ends_at))
          ) AS s(step, action, from_status, to_status, actor, at)
        WHERE b.id > %(b0)s ORDER BY b.id, s.step""", params)


def ensure_open_menu(conn, ctx: dict) -> int:
    """A menu still open for orders with plenty of portions (the order benchmark's); its id."""
    row = conn.execute("""
        SELECT m.id FROM canteen_menus m
        WHERE m.org_id = %s AND m.cutoff_at > now() + interval '1 day'
          AND NOT EXISTS (SELECT 1 FROM canteen_menu_items i
                           WHERE i.menu_id = m.id AND i.portions_left < %s)
          AND EXISTS (SELECT 1 FROM canteen_menu_items i WHERE i.menu_id = m.id)
        ORDER BY m.cutoff_at DESC LIMIT 1""", (ctx["canteen"], BENCH_MENU_PORTIONS // 2)
                       ).fetchone()
    if row:
        return row[0]
    menu_id = conn.execute("""
        INSERT INTO canteen_menus (community_id, org_id, date, meal, cutoff_at, delivery_start,
                                   delivery_end, created_by_id, created_at)
        SELECT %(c)s, %(org)s, d, 'lunch', (d + time '09:30') AT TIME ZONE %(tz)s,
               (d + time '11:00') AT TIME ZONE %(tz)s, (d + time '12:30') AT TIME ZONE %(tz)s,
               %(user)s, now()
        FROM (SELECT greatest(max(date) + 1, (now() AT TIME ZONE %(tz)s)::date + 30) AS d
                FROM canteen_menus WHERE org_id = %(org)s) AS day
        RETURNING id""", {"c": ctx["community"], "org": ctx["canteen"], "tz": TIMEZONE,
                          "user": ctx["canteen_user"]}).fetchone()[0]
    conn.execute("""
        INSERT INTO canteen_menu_items (menu_id, dish_id, portions_total, portions_left)
        SELECT %(menu)s, id, %(n)s, %(n)s FROM canteen_dishes
        WHERE org_id = %(org)s AND is_active ORDER BY id LIMIT 6""",
                 {"menu": menu_id, "org": ctx["canteen"], "n": BENCH_MENU_PORTIONS})
    return menu_id


def bulk_fill(url: str, reports: int) -> None:
    """Every bulk table, in one transaction, then VACUUM ANALYZE."""
    with psycopg.connect(libpq_url(url)) as conn:
        # Every reference below is drawn from existing rows: skip the per-row foreign-key
        # triggers (a superuser's bulk-load switch; the constraints stay declared) and give
        # sorts memory.
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET work_mem = '128MB'")
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SELECT setseed(0.2024)")
        ctx = ids(conn)
        with timed("residents and households"):
            insert_residents(conn, ctx)
        with timed(f"{reports:,} reports"):
            report0 = insert_reports(conn, ctx, reports)
        with timed("tickets"):
            insert_tickets(conn, ctx, report0)
        with timed("report timelines"):
            insert_report_events(conn, report0)
        with timed("notifications"):
            insert_report_notifications(conn, report0)
        with timed(f"{ORDERS:,} canteen orders"):
            insert_canteen(conn, ctx)
        with timed(f"{ACTIVITIES:,} activities"):
            insert_activities(conn, ctx)
        with timed(f"{BOOKINGS:,} bookings"):
            insert_bookings(conn, ctx)
        ensure_open_menu(conn, ctx)
        with timed("commit"):
            conn.commit()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn, timed("VACUUM ANALYZE"):
        conn.execute("VACUUM (ANALYZE)")


def table_counts(url: str) -> dict[str, int]:
    """Rows in the tables the benchmark is about."""
    tables = ("users", "reports", "tickets", "report_events", "notifications",
              "canteen_orders", "canteen_order_events", "activities", "activity_signups",
              "bookings")
    with psycopg.connect(libpq_url(url)) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def ensure_seeded(url: str, *, reports: int = DEFAULT_REPORTS, reseed: bool = False) -> bool:
    """Build the data set unless the database already holds this scale; True if built."""
    if not reseed and seeded_reports(url) == reports:
        log(f"seed: {db_name(url)} already holds {reports:,} reports (--reseed to rebuild)")
        migrate(url)
        with psycopg.connect(libpq_url(url)) as conn:
            ensure_open_menu(conn, ids(conn))
        return False
    log(f"seed: building {db_name(url)} with {reports:,} reports")
    start = time.perf_counter()
    recreate_database(url)
    migrate(url)
    seed_demo_base(url)
    bulk_fill(url, reports)
    write_marker(url, reports)
    log(f"seed: done in {time.perf_counter() - start:.0f} s")
    return True


def parse_scale(value: str) -> int:
    """A report count: 200000, 200k, 1m or 1e6."""
    text = value.strip().lower().replace("_", "").replace(",", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    number = float(text[:-1] if factor > 1 else text) * factor
    if not 1_000 <= number <= 5_000_000:
        raise argparse.ArgumentTypeError("scale must be between 1,000 and 5,000,000 reports")
    return int(number)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.seed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=parse_scale, default=DEFAULT_REPORTS,
                        help="number of reports (default 200000; e.g. 1m)")
    parser.add_argument("--reseed", action="store_true", help="rebuild even at the same scale")
    parser.add_argument("--database-url", help=f"default: {DEFAULT_DATABASE_URL}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Build the data set and print the row counts."""
    args = parse_args(argv)
    url = database_url(args.database_url)
    ensure_seeded(url, reports=args.scale, reseed=args.reseed)
    for table, count in table_counts(url).items():
        log(f"  {table:<22} {count:>10,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
