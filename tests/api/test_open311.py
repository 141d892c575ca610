"""Open311 GeoReport v2 under /open311/v2/, as a city system sees it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from app.extensions import db
from app.models import Open311Key, Report, ReportStatus, Ticket
from app.services import open311, reports, uploads
from app.services.report_catalogue import ensure_categories, ensure_routing_rules
from tests import factories as f
from tests.services.test_uploads import photo

BASE = "/open311/v2"
HERE = {"lat": "31.1916", "long": "121.4451"}


@pytest.fixture
def community(app):
    comm = f.community()
    ensure_categories()
    ensure_routing_rules(comm)
    db.session.commit()
    return comm


@pytest.fixture
def property_org(community):
    return f.org(community, "property_company", name="总浦桥物业")


@pytest.fixture
def office(community):
    return f.org(community, "community_office", name="总浦桥居委会")


@pytest.fixture
def api_key(office, property_org):
    _, key = open311.issue_key(org_code=office.code, name="12345 热线")
    return key


def report_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Report))


def post_request(client, **fields):
    """POST requests.json form-encoded, the way a city system does."""
    return client.post(f"{BASE}/requests.json", data=fields)


def good_fields(key: str, /, **overrides) -> dict:
    """A valid form for broken_facility at the community; None in overrides drops a field."""
    fields = {"api_key": key, "service_code": "broken_facility",
              "description": "3 号楼门口的路灯杆被撞歪了", "jurisdiction_id": "shanghai",
              **HERE}
    return {k: v for k, v in (fields | overrides).items() if v is not None}


def assert_open311_error(response, status: int) -> str:
    """The body is [{"code": status, "description": ...}] and JSON; returns the description."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body, list) and len(body) == 1
    assert body[0]["code"] == status and body[0]["description"]
    return body[0]["description"]


def file_open311(client, api_key: str, **overrides) -> int:
    response = post_request(client, **good_fields(api_key, **overrides))
    assert response.status_code == 201, response.get_data(as_text=True)
    return int(response.get_json()[0]["service_request_id"])


def resident_dispute(community) -> Report:
    """A private report filed by a resident through the mini-program's service."""
    user = f.resident(community)
    return reports.submit_report(reporter_id=user.id, category="neighbour_dispute",
                                 description="楼上天天半夜装修", photo_ids=[],
                                 lat=31.1916, lng=121.4451)


# --- services -------------------------------------------------------------------------------

def test_services_lists_public_categories_only(client, community):
    response = client.get(f"{BASE}/services.json?jurisdiction_id=shanghai")
    assert response.status_code == 200
    services = {s["service_code"]: s for s in response.get_json()}
    assert "neighbour_dispute" not in services
    assert {"illegal_parking", "garbage", "elevator_fault", "other"} <= set(services)
    parking = services["illegal_parking"]
    assert parking["service_name"] == "车辆乱停放"
    assert parking["metadata"] is True and parking["type"] == "realtime"
    assert parking["description"] and parking["group"] and "illegal_parking" in parking["keywords"]
    assert services["garbage"]["metadata"] is False
    assert client.head(f"{BASE}/services.json").status_code == 200


def test_service_definition_lists_the_extra_fields_as_attributes(client, community):
    response = client.get(f"{BASE}/services/elevator_fault.json")
    assert response.status_code == 200
    body = response.get_json()
    assert body["service_code"] == "elevator_fault"
    assert body["attributes"] == [{
        "variable": True, "code": "trapped", "datatype": "string", "required": True,
        "datatype_description": "", "order": 1, "description": "是否有人被困"}]
    assert client.get(f"{BASE}/services/garbage.json").get_json()["attributes"] == []


@pytest.mark.parametrize("code", ["neighbour_dispute", "no_such_thing"])
def test_service_definition_of_private_or_unknown_code_is_404(client, community, code):
    assert_open311_error(client.get(f"{BASE}/services/{code}.json"), 404)


# --- POST requests.json: bad input writes nothing ---------------------------------------------

def _revoked(api_key: str) -> str:
    row = db.session.scalar(select(Open311Key).where(
        Open311Key.key_hash == open311.hash_key(api_key)))
    row.revoked_at = reports.now()
    db.session.commit()
    return api_key


@pytest.mark.parametrize("status, make_fields", [
    (403, lambda key: good_fields(key, api_key=None)),
    (403, lambda key: good_fields(key, api_key="not-a-key")),
    (403, lambda key: good_fields(_revoked(key))),
    (400, lambda key: good_fields(key, service_code=None)),
    (404, lambda key: good_fields(key, service_code="neighbour_dispute")),
    (404, lambda key: good_fields(key, service_code="no_such_thing")),
    (400, lambda key: good_fields(key, lat=None, long=None)),
    (400, lambda key: good_fields(key, long=None)),
    (400, lambda key: good_fields(key, lat="31.30", long="121.60")),
    (400, lambda key: good_fields(key, lat="north")),
    (400, lambda key: good_fields(key, lat="95", long="121.4451")),
    (400, lambda key: good_fields(key, description="   ")),
    (400, lambda key: good_fields(key, description="长" * 2001)),
    (400, lambda key: good_fields(key, service_code="illegal_parking")),
    (400, lambda key: good_fields(key, media_url="ftp://example.com/a.jpg")),
    (400, lambda key: good_fields(key, service_code="elevator_fault")),
], ids=["no-key", "bad-key", "revoked-key", "no-service-code", "private-code", "unknown-code",
        "no-location", "lat-without-long", "far-away", "lat-not-a-number", "lat-out-of-range",
        "empty-description", "long-description", "photo-required-without-media-url",
        "media-url-not-http", "required-attribute-missing"])
def test_bad_post_is_an_open311_error_and_writes_no_report(client, api_key, status, make_fields):
    response = post_request(client, **make_fields(api_key))
    assert_open311_error(response, status)
    assert report_count() == 0


def test_post_needs_no_point_when_an_address_is_given(client, api_key):
    report_id = file_open311(client, api_key, lat=None, long=None,
                             address_string="总浦桥小区 3 号楼")
    report = db.session.get(Report, report_id)
    assert (report.lat, report.lng, report.location_text) == (None, None, "总浦桥小区 3 号楼")


# --- POST requests.json: a good request ----------------------------------------------------------

def test_good_post_files_a_routed_report_and_reads_back_open(client, api_key, office,
                                                             property_org):
    response = post_request(client, **good_fields(
        api_key, media_url="https://city.example/photos/1.jpg", email="wang@example.com",
        first_name="伟", last_name="王", phone="13812345678"))

    assert response.status_code == 201
    [created] = response.get_json()
    assert set(created) == {"service_request_id", "service_notice", "account_id"}
    assert created["account_id"] is None and created["service_notice"]
    report = db.session.get(Report, int(created["service_request_id"]))
    assert (report.source, report.source_org_id, report.reporter_id) == ("open311", office.id,
                                                                         None)
    assert report.community_id == office.community_id
    assert report.extra["media_url"] == "https://city.example/photos/1.jpg"
    assert report.extra["contact"]["phone"] == "13812345678"
    assert report.status == ReportStatus.ROUTED
    tickets = db.session.scalars(select(Ticket).where(Ticket.report_id == report.id)).all()
    assert [t.org_id for t in tickets] == [property_org.id]

    detail = client.get(f"{BASE}/requests/{report.id}.json?jurisdiction_id=shanghai")
    assert detail.status_code == 200
    [shown] = detail.get_json()
    assert shown["service_request_id"] == str(report.id)
    assert shown["status"] == "open"
    assert shown["agency_responsible"] == "总浦桥物业"
    assert shown["service_code"] == "broken_facility" and shown["service_name"] == "公共设施损坏"
    assert shown["media_url"] == "https://city.example/photos/1.jpg"
    assert (shown["lat"], shown["long"]) == (31.1916, 121.4451)
    assert shown["expected_datetime"] == tickets[0].expected_at.isoformat(timespec="seconds")
    assert shown["requested_datetime"].endswith("+00:00")
    text = detail.get_data(as_text=True)
    assert "13812345678" not in text and "wang@example.com" not in text


def test_post_stores_the_attributes_of_the_service(client, api_key):
    report_id = file_open311(client, api_key, service_code="elevator_fault",
                             **{"attribute[trapped]": "是", "attribute[unknown]": "x"})
    assert db.session.get(Report, report_id).extra == {"trapped": "是"}


# --- GET requests.json and requests/<id>.json ---------------------------------------------

def _set(report_id: int, **values) -> None:
    report = db.session.get(Report, report_id)
    for name, value in values.items():
        setattr(report, name, value)
    db.session.commit()


def ids_of(response) -> list[int]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [int(r["service_request_id"]) for r in response.get_json()]


def test_requests_filter_by_status_code_and_window_and_hide_private(client, api_key, community):
    garbage = file_open311(client, api_key, service_code="garbage", media_url="https://x.cn/1.jpg")
    lighting = file_open311(client, api_key, service_code="lighting")
    resolved = file_open311(client, api_key, service_code="lighting")
    old = file_open311(client, api_key, service_code="garbage", media_url="https://x.cn/2.jpg")
    private = resident_dispute(community)
    _set(lighting, status=ReportStatus.CLOSED)
    _set(resolved, status=ReportStatus.RESOLVED)
    _set(old, created_at=reports.now() - timedelta(days=100))

    assert ids_of(client.get(f"{BASE}/requests.json")) == [resolved, lighting, garbage]
    assert ids_of(client.get(f"{BASE}/requests.json?status=open")) == [garbage]
    assert ids_of(client.get(f"{BASE}/requests.json?status=closed")) == [resolved, lighting]
    assert ids_of(client.get(f"{BASE}/requests.json?service_code=garbage")) == [garbage]
    assert ids_of(client.get(f"{BASE}/requests.json?service_code=garbage,lighting"
                             "&status=open,closed")) == [resolved, lighting, garbage]
    start = (reports.now() - timedelta(days=120)).isoformat()
    end = (reports.now() - timedelta(days=60)).isoformat()
    assert ids_of(client.get(f"{BASE}/requests.json",
                             query_string={"start_date": start, "end_date": end})) == [old]
    assert ids_of(client.get(f"{BASE}/requests.json",
                             query_string={"service_request_id": f"{old},{garbage}"})) == [
        garbage, old]
    statuses = {r["service_request_id"]: r["status"]
                for r in client.get(f"{BASE}/requests.json").get_json()}
    assert statuses[str(resolved)] == "closed"

    for query in ({}, {"service_code": "neighbour_dispute"},
                  {"service_request_id": str(private.id)}, {"status": "open"}):
        assert private.id not in ids_of(client.get(f"{BASE}/requests.json", query_string=query))
    assert_open311_error(client.get(f"{BASE}/requests/{private.id}.json"), 404)


def test_media_url_of_a_resident_photo_is_absolute(client, community, property_org):
    user = f.resident(community)
    upload = uploads.create_upload(owner_id=user.id, data=photo())
    report = reports.submit_report(reporter_id=user.id, category="garbage",
                                   description="楼下垃圾堆了三天", photo_ids=[upload.id],
                                   lat=31.1916, lng=121.4451)
    [shown] = client.get(f"{BASE}/requests/{report.id}.json").get_json()
    assert shown["media_url"] == f"http://localhost/media/{upload.sha256}.jpg"


@pytest.mark.parametrize("query, words", [
    ({"status": "pending"}, "status"),
    ({"start_date": "yesterday"}, "start_date"),
    ({"start_date": "2026-03-01T00:00:00+08:00", "end_date": "2026-02-01"}, "start_date"),
    ({"service_request_id": "1,abc"}, "service_request_id"),
])
def test_bad_search_parameters_are_400(client, community, query, words):
    description = assert_open311_error(client.get(f"{BASE}/requests.json", query_string=query),
                                       400)
    assert words in description


@pytest.mark.parametrize("path", ["/requests/999999.json", "/requests/abc.json",
                                  "/requests/99999999999999.json"])
def test_unknown_request_is_a_404_array(client, community, path):
    assert_open311_error(client.get(BASE + path), 404)


# --- formats, paths, methods ------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/services.xml", "/services/garbage.xml", "/requests.xml",
                                  "/requests/1.xml"])
def test_xml_is_refused_with_a_400(client, community, path):
    assert "JSON" in assert_open311_error(client.get(BASE + path), 400)


def test_xml_post_is_refused_and_writes_nothing(client, api_key):
    response = client.post(f"{BASE}/requests.xml", data=good_fields(api_key))
    assert_open311_error(response, 400)
    assert report_count() == 0


@pytest.mark.parametrize("method, path, status", [
    ("get", "/open311/v2/nothing-here.json", 404),
    ("get", "/open311", 404),
    ("get", "/open311/v1/services.json", 404),
    ("delete", "/open311/v2/services.json", 405),
    ("post", "/open311/v2/requests/1.json", 405),
])
def test_unknown_paths_and_methods_use_the_open311_format(client, community, method, path,
                                                          status):
    assert_open311_error(getattr(client, method)(path), status)


def test_a_crash_is_a_500_array(client, community, monkeypatch):
    def broken():
        raise RuntimeError("database on fire")

    monkeypatch.setattr(open311, "list_services", broken)
    assert_open311_error(client.get(f"{BASE}/services.json"), 500)


# --- the admin command -------------------------------------------------------------------------

def test_open311_key_command_prints_a_working_key_once(runner, client, office, property_org):
    result = runner.invoke(args=["open311-key", "--org", office.code, "--name", "12345 热线"])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    row = db.session.scalar(select(Open311Key))
    assert (row.org_id, row.name, row.key_hash) == (office.id, "12345 热线",
                                                    open311.hash_key(key))
    assert key not in row.key_hash
    assert post_request(client, **good_fields(key)).status_code == 201


def test_open311_key_command_refuses_an_unknown_org(runner, app):
    result = runner.invoke(args=["open311-key", "--org", "nobody"])
    assert result.exit_code != 0 and "找不到该组织" in result.output
    assert db.session.scalar(select(func.count()).select_from(Open311Key)) == 0


# --- found by fuzzing /open311 (tests/fuzz/) -----------------------------------------------------

@pytest.mark.parametrize("field", ["description", "address_string", "service_code", "email",
                                   "media_url", "attribute[trapped]", "api_key"])
def test_a_nul_character_in_the_form_is_a_400_and_writes_nothing(client, api_key, field):
    # PostgreSQL text cannot hold U+0000: it was a 500 there (and stored as-is on SQLite).
    fields = good_fields(api_key, media_url="https://x.cn/1.jpg")
    fields[field] = fields.get(field, "是") + "\x00"
    description = assert_open311_error(post_request(client, **fields), 400)
    assert "U+0000" in description
    assert report_count() == 0


@pytest.mark.parametrize("path", ["/requests.json?service_code=gar%00bage",
                                  "/requests.json?status=open&status=%00",
                                  "/services/gar%00bage.json", "/requests/1%00.json"])
def test_a_nul_character_in_a_search_is_a_400(client, community, path):
    assert "U+0000" in assert_open311_error(client.get(BASE + path), 400)


def test_a_value_the_database_cannot_hold_is_a_400_and_the_session_recovers(client, community,
                                                                          monkeypatch):
    def overflow():  # OverflowError on SQLite, DataError on PostgreSQL: both were a 500 here
        return db.session.execute(text("SELECT CAST(:v AS INTEGER)"), {"v": 2**70}).scalar()

    with monkeypatch.context() as patched:
        patched.setattr(open311, "list_services", overflow)
        assert_open311_error(client.get(f"{BASE}/services.json"), 400)
    assert client.get(f"{BASE}/services.json").status_code == 200  # rolled back, usable


@pytest.mark.parametrize("error", [
    OperationalError("SELECT 1", {}, Exception("gone")), RedisConnectionError("redis down"),
], ids=["database-down", "redis-down"])
def test_an_outage_is_a_503_with_retry_after_not_a_500(client, community, monkeypatch, error):
    def unavailable(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(open311, "list_services", unavailable)
    response = client.get(f"{BASE}/services.json")
    assert_open311_error(response, 503)
    assert int(response.headers["Retry-After"]) >= 1


def test_open311_is_in_the_openapi_document_with_its_own_error_shape(client):
    spec = client.get("/openapi.json").get_json()
    paths = {p: ops for p, ops in spec["paths"].items() if p.startswith("/open311/")}
    assert set(paths) == {"/open311/v2/services.json", "/open311/v2/services/{service_code}.json",
                          "/open311/v2/requests.json",
                          "/open311/v2/requests/{service_request_id}.json"}
    assert set(paths["/open311/v2/requests.json"]) == {"get", "post"}
    error = paths["/open311/v2/requests.json"]["post"]["responses"]["default"]
    assert error["content"]["application/json"]["schema"] == {
        "type": "array", "items": {"$ref": "#/components/schemas/Open311Error"}}
    form = spec["components"]["schemas"]["Open311RequestForm"]
    assert form["required"] == ["api_key", "service_code"]
    assert form.get("additionalProperties", True) is True  # the attribute[CODE] fields
    assert "security" not in paths["/open311/v2/services.json"]["get"]
