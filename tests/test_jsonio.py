"""Flask's JSON responses through orjson (app.jsonio)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

from flask import jsonify


def test_responses_keep_sorted_keys_utf8_text_and_iso_timestamps(app):
    with app.test_request_context():
        body = jsonify({"b": 1, "a": "邻里", "at": datetime(2026, 11, 29, 8, 0, tzinfo=UTC),
                        "day": date(2026, 11, 29), 200: "ok"}).get_data()
    assert body == ('{"200":"ok","a":"邻里","at":"2026-11-29T08:00:00+00:00",'
                    '"b":1,"day":"2026-11-29"}\n').encode()


def test_what_orjson_refuses_falls_back_to_the_standard_library(app):
    with app.test_request_context():
        huge = jsonify({"ids": [2**70], "price": Decimal("1.50")}).get_data()
    assert json.loads(huge) == {"ids": [2**70], "price": "1.50"}


def test_an_api_error_is_still_the_one_error_shape(client):
    r = client.get("/api/v1/no-such-thing")
    assert r.status_code == 404 and set(r.get_json()["error"]) >= {"code", "message"}
