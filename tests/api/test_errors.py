"""The one error shape: no HTML, no traceback, request ids on every response."""

from __future__ import annotations

import pytest

from app.errors import error_response


def assert_error_shape(response, status, code):
    assert response.status_code == status
    assert response.is_json, response.data[:200]
    error = response.get_json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)


def test_unknown_route_is_json_404(client):
    assert_error_shape(client.get("/api/v1/nope"), 404, "not_found")


def test_wrong_method_is_json_405(client):
    r = client.delete("/api/v1/auth/staff-login")
    assert_error_shape(r, 405, "method_not_allowed")
    assert "POST" in r.headers["Allow"]


def test_body_over_the_limit_is_413(client, app):
    big = b"x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    r = client.post("/api/v1/auth/staff-login", data=big, content_type="application/json")
    assert_error_shape(r, 413, "too_large")


def test_unexpected_error_is_500_with_request_id_and_no_traceback(client, monkeypatch):
    from app.services import accounts
    from tests import factories as f

    def boom(_user_id):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(accounts, "load_profile", boom)
    user = f.resident(f.community())
    r = client.get("/api/v1/me", headers={"X-Request-ID": "req-123", **f.headers(user)})
    assert_error_shape(r, 500, "internal_error")
    assert r.get_json()["error"]["details"]["request_id"] == "req-123"
    assert b"secret internals" not in r.data and b"Traceback" not in r.data


@pytest.mark.parametrize("given, echoed", [("abc-123", True), ("bad id with spaces", False)])
def test_request_id_is_echoed_or_generated(client, given, echoed):
    r = client.get("/healthz", headers={"X-Request-ID": given})
    assert (r.headers["X-Request-ID"] == given) is echoed
    assert r.headers["X-Request-ID"]


def test_error_response_helper_keeps_headers(app):
    with app.test_request_context():
        r = error_response(429, "rate_limited", "慢一点", {"a": 1}, {"Retry-After": "9"})
    assert r.headers["Retry-After"] == "9"


def test_healthz_and_readyz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.get_json()["checks"] == {"database": "ok", "redis": "ok"}


def test_readyz_names_the_failing_dependency(client, monkeypatch):
    from redis.exceptions import ConnectionError as RedisDown

    from app.extensions import redis_store

    def down():
        raise RedisDown("refused")

    monkeypatch.setattr(redis_store.client, "ping", down)
    r = client.get("/readyz")
    assert_error_shape(r, 503, "not_ready")
    assert r.get_json()["error"]["details"]["failed"] == ["redis"]


def test_openapi_documents_every_endpoint_with_bearer_auth(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    me = spec["paths"]["/api/v1/me"]["get"]
    assert me["security"] == [{"bearerAuth": []}]
    assert "200" in me["responses"]
    assert spec["paths"]["/api/v1/auth/wx-login"]["post"]["requestBody"]


# ---- found by the fuzzer (tests/fuzz/) ------------------------------------------------------

@pytest.mark.parametrize("report_id", [2**31, 2**70])
def test_an_id_beyond_the_database_range_is_404_not_500(client, report_id):
    from tests import factories as f

    user = f.resident(f.community())
    for r in (client.get(f"/api/v1/reports/{report_id}", headers=f.headers(user)),
              client.post(f"/api/v1/reports/{report_id}/feedback", json={"fixed": True},
                          headers=f.headers(user))):
        assert_error_shape(r, 404, "not_found")


def test_openapi_documents_the_id_range(client):
    spec = client.get("/openapi.json").get_json()
    (param,) = spec["paths"]["/api/v1/reports/{report_id}"]["parameters"]
    assert param["schema"]["maximum"] == 2**31 - 1


def test_a_value_the_database_cannot_hold_is_422_not_500(client, monkeypatch):
    from sqlalchemy import text

    from app.extensions import db
    from app.services import accounts
    from tests import factories as f

    def overflow(_user_id):  # an integer no database column holds: OverflowError / DataError
        return db.session.execute(text("SELECT CAST(:v AS INTEGER)"), {"v": 2**70}).scalar()

    monkeypatch.setattr(accounts, "load_profile", overflow)
    user = f.resident(f.community())
    r = client.get("/api/v1/me", headers=f.headers(user))
    assert_error_shape(r, 422, "value_out_of_range")


def test_openapi_documents_the_error_shape_on_every_operation(client):
    spec = client.get("/openapi.json").get_json()
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"] and "ErrorBody" in error["properties"]["error"]["$ref"]
    default = spec["components"]["responses"]["DEFAULT_ERROR"]
    assert default["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method != "parameters":
                assert "default" in operation["responses"], (method, path)


def test_openapi_documents_the_idempotency_key_header(client):
    spec = client.get("/openapi.json").get_json()
    order = spec["paths"]["/api/v1/canteen/orders"]["post"]["parameters"]
    report = spec["paths"]["/api/v1/reports"]["post"]["parameters"]
    assert [(p["in"], p["name"], p["required"]) for p in order] == [
        ("header", "Idempotency-Key", True)]
    assert [(p["name"], p["required"]) for p in report] == [("Idempotency-Key", False)]
