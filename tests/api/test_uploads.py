"""POST /api/v1/uploads and GET /media/<sha256>.jpg as the mini-program sees them."""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from app.extensions import db
from app.models import Upload
from tests import factories as f
from tests.services.test_uploads import jpeg_with_metadata, photo, png_claiming, truncated_jpeg

MEDIA_URL = re.compile(r"^/media/[0-9a-f]{64}\.jpg$")


@pytest.fixture(autouse=True)
def empty_upload_dir(app):
    """Each test starts with an empty upload directory, so file counts are exact."""
    root = Path(app.config["UPLOAD_DIR"])
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    yield root


@pytest.fixture
def resident(app):
    return f.resident(f.community())


def post_photo(client, user, data: bytes | None, filename: str = "photo.jpg", **kw):
    """Send `data` as the multipart field `file`, the way wx.uploadFile does."""
    form = {} if data is None else {"file": (io.BytesIO(data), filename)}
    headers = f.headers(user) if user is not None else {}
    response = client.post("/api/v1/uploads", data=form, headers=headers,
                           content_type="multipart/form-data", **kw)
    # werkzeug's client spools bodies past 500 KB to a temp file and, without follow_redirects,
    # never closes it: close it here so no ResourceWarning (an error in this suite) leaks.
    response.request.input_stream.close()
    return response


def nothing_written(root: Path) -> bool:
    rows = db.session.scalar(select(func.count()).select_from(Upload))
    return rows == 0 and not any(p.is_file() for p in root.rglob("*"))


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def test_upload_returns_urls_size_and_suggested_location(client, resident):
    r = post_photo(client, resident, jpeg_with_metadata(orientation=6))
    assert r.status_code == 201
    body = r.get_json()
    assert set(body) == {"id", "url", "thumb_url", "width", "height", "suggested_location",
                         "created_at"}
    assert (body["width"], body["height"]) == (200, 300)
    assert body["suggested_location"] == {"lat": pytest.approx(31.1915),
                                          "lng": pytest.approx(121.445)}
    assert MEDIA_URL.match(body["url"]) and MEDIA_URL.match(body["thumb_url"])
    assert body["created_at"].endswith("+00:00")


def test_photo_without_gps_has_null_location(client, resident):
    r = post_photo(client, resident, photo(fmt="PNG"), filename="shot.png")
    assert r.status_code == 201 and r.get_json()["suggested_location"] is None


def test_media_is_served_as_cacheable_jpeg_without_metadata(client, resident):
    body = post_photo(client, resident, jpeg_with_metadata(orientation=1)).get_json()
    r = client.get(body["url"])
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "image/jpeg"
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert r.headers["ETag"].strip('"') in body["url"]
    image = Image.open(io.BytesIO(r.data))
    assert image.format == "JPEG" and dict(image.getexif()) == {}
    assert not {"exif", "icc_profile", "xmp"} & set(image.info)
    again = client.get(body["url"], headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    assert client.get(body["thumb_url"]).headers["Content-Type"] == "image/jpeg"


@pytest.mark.parametrize("path", [f"/media/{'0' * 64}.jpg", "/media/not-a-hash.jpg",
                                  f"/media/{'0' * 64}.png"])
def test_unknown_media_is_404_in_the_error_shape(client, path):
    r = client.get(path)
    assert r.status_code == 404 and r.is_json
    assert r.get_json()["error"]["code"] in ("media_not_found", "not_found")


def test_same_photo_twice_gives_the_same_upload(client, resident, empty_upload_dir):
    data = photo(size=(900, 600))
    first = post_photo(client, resident, data).get_json()
    second = post_photo(client, resident, data)
    assert second.status_code == 201 and second.get_json()["id"] == first["id"]
    assert len([p for p in empty_upload_dir.rglob("*") if p.is_file()]) == 2


def test_large_photo_is_downscaled(client, resident):
    body = post_photo(client, resident, photo(size=(3000, 2000))).get_json()
    assert body["width"] == 2048 and body["height"] in (1365, 1366)
    thumb = Image.open(io.BytesIO(client.get(body["thumb_url"]).data))
    assert max(thumb.size) == 400


def test_staff_can_upload(client):
    comm = f.community()
    clerk = f.staff(f.org(comm, "property_company"), "staff")
    assert post_photo(client, clerk, photo(fmt="WEBP"), filename="a.webp").status_code == 201


@pytest.mark.parametrize(("make_data", "status", "code"), [
    (lambda: os.urandom(4096), 422, "invalid_image"),
    (truncated_jpeg, 422, "invalid_image"),
    (lambda: png_claiming(8000, 6000), 422, "image_too_large"),
    (lambda: png_claiming(30_000, 30_000), 422, "image_too_large"),
    (lambda: b"\0" * (10 * 1024 * 1024 + 1), 413, "too_large"),
    (lambda: b"\0" * (13 * 1024 * 1024), 413, "too_large"),  # past MAX_CONTENT_LENGTH
], ids=["random", "truncated", "48mp", "bomb", "over-10mb", "over-12mb"])
def test_bad_files_are_rejected_and_nothing_is_written(client, resident, empty_upload_dir,
                                                       make_data, status, code):
    r = post_photo(client, resident, make_data())
    assert r.status_code == status and error_code(r) == code
    assert r.get_json()["error"]["message"]
    assert nothing_written(empty_upload_dir)


def test_missing_file_field_is_422(client, resident, empty_upload_dir):
    r = post_photo(client, resident, None)
    assert r.status_code == 422 and error_code(r) == "validation_error"
    assert "file" in r.get_json()["error"]["details"]["fields"]
    assert nothing_written(empty_upload_dir)


def test_unauthenticated_is_401(client, empty_upload_dir):
    r = post_photo(client, None, photo())
    assert r.status_code == 401 and error_code(r) == "token_missing"
    assert nothing_written(empty_upload_dir)


def test_too_many_uploads_is_429(app, client, resident, monkeypatch):
    monkeypatch.setitem(app.config, "UPLOAD_RATE_LIMIT", 1)
    assert post_photo(client, resident, photo(colour=(1, 1, 1))).status_code == 201
    r = post_photo(client, resident, photo(colour=(2, 2, 2)))
    assert r.status_code == 429 and error_code(r) == "rate_limited"
    assert int(r.headers["Retry-After"]) > 0
    assert db.session.scalar(select(func.count()).select_from(Upload)) == 1
