"""The big screen in a real browser (Debian's chromium driven by Playwright) against gunicorn."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from app.services.report_catalogue import ensure_categories, ensure_routing_rules
from app.services.screen import issue_token
from tests import factories as f
from tests.e2e.conftest import ROOT

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture
def scene(app):
    comm = f.community(code="screen-e2e", name="总浦桥社区")
    bld = f.building(comm, name="12号楼")
    f.org(comm, "property_company")
    f.org(comm, "community_office")
    ensure_categories()
    ensure_routing_rules(comm)
    return {"bld": bld, "resident": f.resident(comm), "token": issue_token("screen-e2e")}


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium")
                    and os.environ.get("LINLI_REQUIRE_SERVICES") != "1",
                    reason="Debian's chromium is not installed (.ci/run installs it)")
def test_a_new_report_appears_on_the_screen_within_two_seconds(live_server, scene):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1920, "height": 1080})
        page.goto(f"{live_server}/screen?token={scene['token']}")
        expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=10_000)
        expect(page.locator("#community")).to_contain_text("总浦桥社区")
        expect(page.locator("#status")).to_have_text("实时", timeout=10_000)

        r = httpx.post(f"{live_server}/api/v1/reports", headers=f.headers(scene["resident"]),
                       json={"category": "lighting", "description": "12号楼楼道灯不亮",
                             "building_id": scene["bld"].id})
        assert r.status_code == 201, r.text
        submitted = time.monotonic()
        row = page.locator(f"#report-list li[data-id='{r.json()['id']}']")
        expect(row).to_contain_text("路灯/楼道灯不亮", timeout=2_000)
        assert time.monotonic() - submitted < 2.0
        expect(row).to_contain_text("12号楼")
        page.screenshot(path=str(ARTIFACTS / "screen.png"))
        browser.close()
