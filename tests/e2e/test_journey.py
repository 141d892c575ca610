"""The scripted mini-program journey against a live gunicorn + worker on PostgreSQL + Redis."""

from __future__ import annotations

import pytest

from app.services.demo import seed_demo
from miniprogram_mock import journey

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]
PASSWORD = "journey-demo-pass-1"


def test_the_whole_journey_plays_through(app, monkeypatch, live_server, start_worker,
                                         wechat_server, capsys):
    monkeypatch.setenv("LINLI_DEMO_PASSWORD", PASSWORD)
    seed_demo()
    start_worker()
    code = journey.main(["--base-url", live_server, "--wechat-url", wechat_server,
                         "--staff-password", PASSWORD])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert "全部完成" in out.out
    assert "微信订阅消息共" in out.out
