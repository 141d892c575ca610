"""Every route declares who may call it: role_required, or @access with the reason."""

from __future__ import annotations

# Routes served by libraries, not by us: the OpenAPI document, Swagger UI and static files.
LIBRARY_ENDPOINTS = {"api-docs.openapi_json", "api-docs.openapi_swagger_ui", "static"}


def undeclared_routes(app) -> list[str]:
    """`METHOD /path` of every route whose view has no access declaration."""
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in LIBRARY_ENDPOINTS:
            continue
        view = app.view_functions[rule.endpoint]
        view_class = getattr(view, "view_class", None)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            handler = getattr(view_class, method.lower(), None) if view_class else view
            if handler is not None and not getattr(handler, "_linli_access", None):
                missing.append(f"{method} {rule.rule}")
    return missing


def test_every_route_declares_who_may_call_it(app):
    assert undeclared_routes(app) == []


def declared_access(app) -> dict[str, str]:
    """`METHOD /path` -> the declaration of every route that has one."""
    found = {}
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        view_class = getattr(view, "view_class", None)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            handler = getattr(view_class, method.lower(), None) if view_class else view
            if getattr(handler, "_linli_access", None):
                found[f"{method} {rule.rule}"] = handler._linli_access
    return found


def test_the_platform_routes_are_for_platform_operators_alone(app):
    # /api/v1/admin reaches every community's data (the outbox): no org role may call it, and
    # the platform role opens nothing else but the operator's own profile.
    access = declared_access(app)
    admin = {k: v for k, v in access.items() if k.split(" ", 1)[1].startswith("/api/v1/admin/")}
    assert admin and set(admin.values()) == {"roles: platform_operator"}
    assert {k for k, v in access.items() if "platform_operator" in v} == {
        *admin, "GET /api/v1/me", "PATCH /api/v1/me"}


def test_an_undeclared_route_is_caught(app):
    from flask import Flask

    probe = Flask("probe")
    probe.add_url_rule("/open", "open", lambda: "x")
    assert undeclared_routes(probe) == ["GET /open"]


def test_pages_carry_a_content_security_policy(client):
    for path in ("/docs", "/screen"):
        r = client.get(path)
        assert "default-src 'self'" in r.headers["Content-Security-Policy"], path
        assert r.headers["X-Frame-Options"] == "DENY"
    r = client.get("/healthz")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "Access-Control-Allow-Origin" not in r.headers
