"""Schemathesis against /openapi.json, in-process on the WSGI app, as each kind of caller.

Every operation of the document is fuzzed as a resident and as staff of the property company,
the community office (manager + admin), the canteen (manager + courier) and the care provider,
as a platform operator and without a token, on the two-tenant world of tests/tenancy_fixtures.py
(so ids exist: path ids are drawn either from the caller's own resources or freely). The big
screen's operations are fuzzed again with a valid screen token (the stream cut short by
SCREEN_STREAM_MAX_SECONDS), and the Open311 facade, which takes no token, on its own: with and
without a live api_key.

Each request must answer without a 5xx, with a documented status code, content type and body
schema (each SSE event against its documented schema), and every non-2xx JSON body must be the
house error shape (under /open311 the Open311 one). Operations a caller's roles may not call
get a couple of examples (their 403 must still be well-formed); the rest get FUZZ_EXAMPLES
each, positive and negative data.

Hypothesis runs derandomized with no example database, so CI sees the same cases every run.
LINLI_FUZZ_EXAMPLES raises the budget for a deeper local run.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.security import PLATFORM_OPERATOR
from app.services import open311, screen
from tests import factories as f
from tests.tenancy_fixtures import build_world

pytestmark = pytest.mark.fuzz

FUZZ_EXAMPLES = int(os.environ.get("LINLI_FUZZ_EXAMPLES", "6"))
FORBIDDEN_EXAMPLES = 2
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
# The caller each fuzz run signs in as (a person of tenant A of the world).
CALLERS = ("resident", "property", "office", "canteen", "care")
ROLES_RE = re.compile(r"Roles: ([a-z_, ]+)\.")


@dataclass
class Finding:
    """One failed check of one operation (the first case that showed it)."""

    operation: str
    problem: str
    detail: str

    def __str__(self) -> str:
        return f"{self.operation}: {self.problem}\n{self.detail}"


@pytest.fixture
def world(app, monkeypatch):
    """The two tenants with one resource of every kind; SSE streams end after a moment."""
    monkeypatch.setitem(app.config, "CANTEEN_STREAM_MAX_SECONDS", 0.2)
    monkeypatch.setitem(app.config, "SCREEN_STREAM_MAX_SECONDS", 0.2)
    return build_world()


def load_schema(app):
    """The app's own OpenAPI document, loaded by Schemathesis for in-process WSGI calls."""
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


def caller_roles(user) -> set[str]:
    """The role names a caller's token carries ("resident" for a WeChat login)."""
    from app.services.accounts import token_claims

    if not user.username:
        return {"resident"}
    claims = token_claims(user, "staff")
    platform = {PLATFORM_OPERATOR} if claims.get(PLATFORM_OPERATOR) else set()
    return {m["role"] for m in claims["orgs"]} | platform


def allowed_roles(operation) -> set[str] | None:
    """Roles named in the operation's description by role_required (None: not protected)."""
    found = ROLES_RE.search(operation.definition.raw.get("description", ""))
    return {r.strip() for r in found.group(1).split(",")} if found else None


def error_shape_problem(response, path: str) -> str | None:
    """Why a non-2xx body is not the house error shape (None when it is, or not JSON); under
    /open311, why it is not the Open311 one."""
    if response.status_code < 400:
        return None
    if "json" not in (response.headers.get("content-type") or [""])[0]:
        return f"{response.status_code} is not JSON"
    body = response.json()
    if path.startswith("/open311"):
        return open311_error_problem(body, response.status_code)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or set(error) != {"code", "message", "details"}:
        return f"{response.status_code} body is not {{'error': {{code, message, details}}}}"
    if not (isinstance(error["code"], str) and isinstance(error["message"], str)
            and isinstance(error["details"], dict)):
        return f"{response.status_code} error fields have the wrong types"
    return None


def open311_error_problem(body, status: int) -> str | None:
    """Why an Open311 error body is not `[{"code": status, "description": "..."}]`."""
    if not (isinstance(body, list) and len(body) == 1 and isinstance(body[0], dict)
            and set(body[0]) == {"code", "description"}):
        return f"{status} body is not [{{code, description}}]"
    if body[0]["code"] != status or not isinstance(body[0]["description"], str):
        return f"{status} Open311 error has the wrong code or description"
    return None


def case_strategy(operation, own_ids: dict[str, int]):
    """Positive cases on the caller's own ids and on free ids, and negative cases."""
    names = [p.name for p in operation.path_parameters]
    known = {n: own_ids[n] for n in names if n in own_ids}
    strategies = [operation.as_strategy(),
                  operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE)]
    if known:
        strategies.insert(0, operation.as_strategy(path_parameters=known))
    return st.one_of(strategies)


def fuzz_operation(operation, sign_in, own_ids: dict, examples: int,
                   statuses: Counter | None = None, strategy=None) -> list[Finding]:
    """Run `examples` cases of one operation (from `strategy`, by default case_strategy); the
    first finding of each kind is kept, and the status codes seen are counted into `statuses`."""
    findings: dict[str, Finding] = {}
    statuses = Counter() if statuses is None else statuses
    label = f"{operation.method.upper()} {operation.path}"

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=case_strategy(operation, own_ids) if strategy is None else strategy)
    def run(case):
        headers = sign_in()  # a fresh token per case: a fuzzed logout revokes only its own
        response = case.call(headers=headers)
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except BaseExceptionGroup as group:  # schemathesis' FailureGroup: one per failed check
            for failure in group.exceptions:
                problem = f"{failure.title}: {first_line(failure.message)}"
                findings.setdefault(problem, Finding(label, problem, reproduction(case, failure,
                                                                                 response)))
        shape = error_shape_problem(response, case.path)
        if shape:
            findings.setdefault(shape, Finding(label, shape, response.text[:500]))

    run()
    return list(findings.values())


def first_line(text: str) -> str:
    """The first line of a message ("" for none)."""
    return (text.strip().splitlines() or [""])[0]


def reproduction(case, failure, response) -> str:
    """The failure's message, the response and a curl line that repeats the case."""
    body = response.content[:400].decode("utf-8", "backslashreplace")  # an image, say
    return (f"{failure.message.strip()[:1200]}\n[{response.status_code}] {body}\n"
            f"{case.as_curl_command()}")


def fuzz_as(app, sign_in, roles: set[str], own_ids: dict) -> list[Finding]:
    """Fuzz every operation of the document as one caller (Open311 takes no token: its own
    test below)."""
    findings = []
    for result in load_schema(app).get_all_operations():
        operation = result.ok()
        if operation.path.startswith("/open311/"):
            continue
        allowed = allowed_roles(operation)
        may_call = allowed is None or bool(allowed & roles)
        examples = FUZZ_EXAMPLES if may_call else FORBIDDEN_EXAMPLES
        findings += fuzz_operation(operation, sign_in, own_ids, examples)
    return findings


@pytest.mark.parametrize("caller", CALLERS)
def test_every_operation_answers_as_documented(app, world, caller):
    user = world.a.people[caller]
    findings = fuzz_as(app, lambda: f.headers(user), caller_roles(user), world.a.ids)
    assert not findings, "\n\n".join(map(str, findings))


def test_every_operation_answers_as_documented_as_a_platform_operator(app, world):
    # No org and no community: the failed-jobs routes get the full budget, every other route
    # must refuse it cleanly (403), never trip over the missing community.
    operator = f.platform_operator()
    findings = fuzz_as(app, lambda: f.headers(operator), caller_roles(operator), world.a.ids)
    assert not findings, "\n\n".join(map(str, findings))


def test_every_operation_answers_as_documented_without_a_token(app, world):
    findings = fuzz_as(app, dict, set(), world.a.ids)
    assert not findings, "\n\n".join(map(str, findings))


def operations_under(app, prefix: str) -> list:
    """The document's operations whose path starts with `prefix`."""
    found = [result.ok() for result in load_schema(app).get_all_operations()]
    return [operation for operation in found if operation.path.startswith(prefix)]


def test_the_big_screen_answers_as_documented_with_its_token(app, world):
    # The JWT callers above reach the screen only as far as its 401; here it is fuzzed with a
    # valid screen token (the header; the query string's `token` is then ignored), the stream
    # cut short by SCREEN_STREAM_MAX_SECONDS.
    token = screen.issue_token(world.a.comm.code)
    findings, reached = [], {}
    for operation in operations_under(app, "/api/v1/screen/"):
        statuses = Counter()
        findings += fuzz_operation(operation, lambda: {"X-Screen-Token": token}, {},
                                   FUZZ_EXAMPLES, statuses)
        reached[operation.path] = statuses[200] > 0
    assert not findings, "\n\n".join(map(str, findings))
    assert reached == {"/api/v1/screen/summary": True, "/api/v1/screen/stream": True}


def with_api_key(case, api_key: str, **fields):
    """The case with a live Open311 api_key (and `fields`) in its form body, when it has one."""
    if isinstance(case.body, dict):
        case.body = {**case.body, "api_key": api_key, **fields}
    return case


def open311_strategy(operation, own_ids: dict, api_key: str, centre: dict):
    """case_strategy, plus (for the POST) cases with the live key, some also with a real service
    and a point in the community, so that the fuzzed fields reach the filing itself."""
    strategy = case_strategy(operation, own_ids)
    if operation.method.upper() != "POST":
        return strategy
    generated = operation.as_strategy()
    return st.one_of(strategy, generated.map(lambda case: with_api_key(case, api_key)),
                     generated.map(lambda case: with_api_key(case, api_key, **centre)))


def test_open311_answers_as_documented(app, world):
    # The facade takes no JWT (reads are public, the POST carries an org's api_key), so it is
    # fuzzed once, without a token, with and without a live key; its errors must be the
    # Open311 array, never the API's shape and never a 5xx.
    _, api_key = open311.issue_key(org_code=world.a.orgs["office"].code, name="fuzz")
    own_ids = {"service_request_id": str(world.a.ids["report_id"]), "service_code": "lighting"}
    centre = {"service_code": "broken_facility", "lat": world.a.comm.center_lat,
              "long": world.a.comm.center_lng}
    findings, seen = [], {}
    for operation in operations_under(app, "/open311/"):
        statuses = Counter()
        findings += fuzz_operation(operation, dict, own_ids, FUZZ_EXAMPLES * 2, statuses,
                                   open311_strategy(operation, own_ids, api_key, centre))
        seen[f"{operation.method.upper()} {operation.path}"] = statuses
    assert not findings, "\n\n".join(map(str, findings))
    assert len(seen) == 5, sorted(seen)
    post = seen.pop("POST /open311/v2/requests.json")
    assert set(post) - {403}, post  # the live key got past the key check
    assert all(statuses[200] for statuses in seen.values()), seen
