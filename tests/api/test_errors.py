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
