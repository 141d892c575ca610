"""The upload service: real decoding, rotation, GPS, metadata stripping, dedup by content hash."""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageCms
from PIL.PngImagePlugin import PngInfo
from sqlalchemy import func, select

from app.errors import NotFound, RateLimited, TooLarge, ValidationFailed
from app.extensions import db
from app.models import Upload
from app.services import uploads
from app.storage import LocalStorage
from tests import factories as f

# 总浦桥, Shanghai: 31°11'29.4"N 121°26'42"E
GPS_DMS = ((31.0, 11.0, 29.4), (121.0, 26.0, 42.0))


# ---- images made in the test ------------------------------------------------------------------

def gps_exif(*, orientation: int | None = None, lat_ref: str = "N", lng_ref: str = "E"):
    """An Exif block with an orientation tag and a GPS position."""
    exif = Image.Exif()
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "TestCam"
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: lat_ref, ExifTags.GPS.GPSLatitude: GPS_DMS[0],
        ExifTags.GPS.GPSLongitudeRef: lng_ref, ExifTags.GPS.GPSLongitude: GPS_DMS[1],
    }
    return exif


def encoded(image: Image.Image, fmt: str, **params) -> bytes:
    """`image` saved as `fmt` into bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def photo(size=(300, 200), colour=(200, 40, 40), fmt="JPEG", **params) -> bytes:
    """A plain photo with a marker square in its top-left corner (to see rotations)."""
    mode = "RGBA" if fmt in ("PNG", "WEBP") and len(colour) == 4 else "RGB"
    image = Image.new(mode, size, colour)
    image.paste((0, 0, 255) + (() if mode == "RGB" else (255,)), (0, 0, 40, 40))
    return encoded(image, fmt, **params)


def jpeg_with_metadata(**exif_kw) -> bytes:
    """A JPEG carrying EXIF (orientation, GPS, camera), an ICC profile, XMP and a comment."""
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return photo(exif=gps_exif(**exif_kw), icc_profile=icc,
                 xmp=b"<x:xmpmeta><rdf:Description GPSLatitude='31'/></x:xmpmeta>",
                 comment=b"taken at home")


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels (CRC fixed up)."""
    data = bytearray(encoded(Image.new("RGB", (8, 8)), "PNG"))
    ihdr = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(data)


def reopen(data: bytes) -> Image.Image:
    """Decode stored bytes again, as a client would."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# ---- fixtures and helpers --------------------------------------------------------------------

@pytest.fixture(autouse=True)
def empty_upload_dir(app):
    """Each test starts with an empty upload directory, so file counts are exact."""
    root = Path(app.config["UPLOAD_DIR"])
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    yield root


@pytest.fixture
def owner(app):
    return f.resident(f.community())


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def upload_rows() -> int:
    return db.session.scalar(select(func.count()).select_from(Upload))


def stored_bytes(digest: str) -> bytes:
    return uploads.media_bytes(digest)


# ---- decoding and normalising -----------------------------------------------------------------

def test_jpeg_is_rotated_upright_and_its_gps_suggested(owner):
    upload = uploads.create_upload(owner_id=owner.id, data=jpeg_with_metadata(orientation=6))
    assert (upload.width, upload.height) == (200, 300)
    assert upload.suggested_location == {"lat": pytest.approx(31.1915),
                                         "lng": pytest.approx(121.445)}
    assert upload.community_id == owner.community_id and upload.mime_type == "image/jpeg"
    image = reopen(stored_bytes(upload.sha256))
    assert image.size == (200, 300)
    # orientation 6 = rotate 90° clockwise: the blue marker moves to the top-right corner
    assert _is_blue(image.getpixel((190, 10))) and not _is_blue(image.getpixel((10, 10)))


def _is_blue(pixel) -> bool:
    red, green, blue = pixel[:3]
    return blue > 200 and red < 60 and green < 60


@pytest.mark.parametrize(("lat_ref", "lng_ref", "expected"), [
    ("N", "E", (31.1915, 121.445)), ("S", "W", (-31.1915, -121.445)),
    (b"S", b"E", (-31.1915, 121.445)),
])
def test_gps_refs_give_the_sign(lat_ref, lng_ref, expected):
    exif = Image.Exif()
    exif.load(gps_exif(lat_ref=lat_ref, lng_ref=lng_ref).tobytes())
    assert uploads.read_gps(exif) == pytest.approx(expected)


def test_missing_or_zero_gps_is_no_location():
    assert uploads.read_gps(Image.Exif()) is None
    exif = Image.Exif()
    exif[ExifTags.IFD.GPSInfo] = {ExifTags.GPS.GPSLatitudeRef: "N",
                                  ExifTags.GPS.GPSLatitude: (0.0, 0.0, 0.0),
                                  ExifTags.GPS.GPSLongitudeRef: "E",
                                  ExifTags.GPS.GPSLongitude: (0.0, 0.0, 0.0)}
    assert uploads.read_gps(exif) is None


def test_stored_image_and_thumb_carry_no_metadata(owner):
    upload = uploads.create_upload(owner_id=owner.id, data=jpeg_with_metadata(orientation=3))
    for digest in (upload.sha256, upload.thumb_hash):
        data = stored_bytes(digest)
        image = reopen(data)
        assert image.format == "JPEG"
        assert dict(image.getexif()) == {}
        assert not {"exif", "icc_profile", "xmp", "comment"} & set(image.info)
        assert b"Exif" not in data and b"TestCam" not in data and b"taken at home" not in data


def test_large_photo_is_downscaled_to_2048_with_a_400_thumbnail(owner):
    upload = uploads.create_upload(owner_id=owner.id, data=photo(size=(3000, 2000)))
    assert upload.width == 2048 and upload.height in (1365, 1366)
    assert reopen(stored_bytes(upload.sha256)).size == (upload.width, upload.height)
    assert max(reopen(stored_bytes(upload.thumb_hash)).size) == 400
    assert upload.byte_size == len(stored_bytes(upload.sha256))


def test_transparent_png_is_flattened_onto_white_without_text_chunks(owner):
    info = PngInfo()
    info.add_text("Comment", "my address is 3-201")
    upload = uploads.create_upload(
        owner_id=owner.id, data=photo(colour=(0, 0, 0, 0), fmt="PNG", pnginfo=info))
    image = reopen(stored_bytes(upload.sha256))
    assert image.mode == "RGB" and image.getpixel((150, 150)) >= (250, 250, 250)
    assert upload.suggested_location is None
    assert b"3-201" not in stored_bytes(upload.sha256)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "MPO"])
def test_png_webp_and_multi_picture_jpeg_are_accepted_and_stored_as_jpeg(owner, fmt):
    params = {"save_all": True, "append_images": [Image.new("RGB", (300, 200))]}
    data = photo(fmt=fmt, **(params if fmt == "MPO" else {}))
    upload = uploads.create_upload(owner_id=owner.id, data=data)
    assert (upload.width, upload.height) == (300, 200)
    assert reopen(stored_bytes(upload.sha256)).format == "JPEG"


def test_palette_and_cmyk_images_are_stored_as_rgb(owner):
    palette = Image.new("RGB", (50, 50), (10, 200, 10)).convert("P")
    cmyk = Image.new("CMYK", (60, 40), (0, 255, 255, 0))
    for data in (encoded(palette, "PNG"), encoded(cmyk, "JPEG")):
        upload = uploads.create_upload(owner_id=owner.id, data=data)
        assert reopen(stored_bytes(upload.sha256)).mode == "RGB"


# ---- bad input: a clear error, and nothing written -------------------------------------------

def truncated_jpeg() -> bytes:
    data = photo(size=(400, 300))
    return data[: len(data) // 2]


@pytest.mark.parametrize("make_data", [
    lambda: os.urandom(5000), lambda: b"", truncated_jpeg,
    lambda: encoded(Image.new("RGB", (20, 20)), "GIF"),
    lambda: encoded(Image.new("RGB", (20, 20)), "BMP"),
    lambda: b"<svg xmlns='http://www.w3.org/2000/svg'/>",
], ids=["random", "empty", "truncated", "gif", "bmp", "svg"])
def test_undecodable_input_is_invalid_image(owner, empty_upload_dir, make_data):
    with pytest.raises(ValidationFailed) as caught:
        uploads.create_upload(owner_id=owner.id, data=make_data())
    assert caught.value.code == "invalid_image" and caught.value.status == 422
    assert upload_rows() == 0 and stored_files(empty_upload_dir) == []


@pytest.mark.parametrize("make_data", [
    lambda: encoded(Image.new("L", (8000, 6000)), "JPEG"),
    lambda: png_claiming(8000, 6000),
    lambda: png_claiming(10_000, 10_000),  # past Pillow's warning limit
    lambda: png_claiming(30_000, 30_000),  # past Pillow's DecompressionBombError limit
], ids=["real-48mp", "header-48mp", "header-100mp", "header-900mp"])
def test_too_many_pixels_is_image_too_large(owner, empty_upload_dir, make_data):
    with pytest.raises(ValidationFailed) as caught:
        uploads.create_upload(owner_id=owner.id, data=make_data())
    assert caught.value.code == "image_too_large"
    assert upload_rows() == 0 and stored_files(empty_upload_dir) == []


def test_over_10_mb_is_too_large(owner, empty_upload_dir):
    with pytest.raises(TooLarge) as caught:
        uploads.create_upload(owner_id=owner.id, data=b"\xff" * (10 * 1024 * 1024 + 1))
    assert caught.value.status == 413 and caught.value.code == "too_large"
    assert upload_rows() == 0 and stored_files(empty_upload_dir) == []


def test_uploads_are_rate_limited_per_user(app, owner, monkeypatch):
    monkeypatch.setitem(app.config, "UPLOAD_RATE_LIMIT", 2)
    for colour in ((1, 2, 3), (4, 5, 6)):
        uploads.create_upload(owner_id=owner.id, data=photo(colour=colour))
    with pytest.raises(RateLimited):
        uploads.create_upload(owner_id=owner.id, data=photo(colour=(7, 8, 9)))
    other = f.resident()
    assert uploads.create_upload(owner_id=other.id, data=photo(colour=(7, 8, 9))).id
    assert upload_rows() == 3


# ---- dedup by content hash -------------------------------------------------------------------

def test_same_photo_twice_is_one_upload_and_one_file(owner, empty_upload_dir):
    data = photo(size=(800, 600), exif=gps_exif())
    first = uploads.create_upload(owner_id=owner.id, data=data)
    second = uploads.create_upload(owner_id=owner.id, data=data)
    assert second.id == first.id and upload_rows() == 1
    assert len(stored_files(empty_upload_dir)) == 2  # the image and its thumbnail


def test_same_photo_from_two_users_is_two_uploads_sharing_one_file(owner, empty_upload_dir):
    data = photo(size=(800, 600), colour=(30, 90, 150))
    mine = uploads.create_upload(owner_id=owner.id, data=data)
    theirs = uploads.create_upload(owner_id=f.resident().id, data=data)
    assert mine.id != theirs.id and mine.sha256 == theirs.sha256
    assert len(stored_files(empty_upload_dir)) == 2
    digest = mine.sha256
    assert uploads.storage_key(digest) == f"{digest[:2]}/{digest[2:4]}/{digest}.jpg"
    assert (empty_upload_dir / uploads.storage_key(digest)).is_file()


def test_stored_content_hash_is_the_sha256_of_the_stored_bytes(owner):
    upload = uploads.create_upload(owner_id=owner.id, data=photo())
    assert uploads.sha256_hex(stored_bytes(upload.sha256)) == upload.sha256
    assert uploads.sha256_hex(stored_bytes(upload.thumb_hash)) == upload.thumb_hash


# ---- attachable and public urls --------------------------------------------------------------

def test_attachable_returns_own_uploads_in_the_given_order(owner):
    a = uploads.create_upload(owner_id=owner.id, data=photo(colour=(1, 1, 1)))
    b = uploads.create_upload(owner_id=owner.id, data=photo(colour=(90, 90, 90)))
    assert [u.id for u in uploads.attachable(owner.id, [b.id, a.id])] == [b.id, a.id]
    assert [u.id for u in uploads.attachable(owner.id, [a.id, b.id, a.id])] == [a.id, b.id]
    assert uploads.attachable(owner.id, []) == []


@pytest.mark.parametrize("whose", ["someone_else", "nobody"])
def test_attachable_rejects_unknown_and_other_users_uploads(owner, whose):
    mine = uploads.create_upload(owner_id=owner.id, data=photo(colour=(5, 5, 5)))
    if whose == "someone_else":
        other_id = uploads.create_upload(owner_id=f.resident().id, data=photo()).id
    else:
        other_id = 999_999
    with pytest.raises(ValidationFailed) as caught:
        uploads.attachable(owner.id, [mine.id, other_id])
    assert caught.value.code == "photo_not_found" and caught.value.status == 422
    assert "photo_ids" in caught.value.details["fields"]
    assert caught.value.details["photo_ids"] == [other_id]


def test_public_urls_are_content_addressed(owner):
    upload = uploads.create_upload(owner_id=owner.id, data=photo())
    assert uploads.public_urls(upload) == {"url": f"/media/{upload.sha256}.jpg",
                                           "thumb_url": f"/media/{upload.thumb_hash}.jpg"}


def test_unknown_or_malformed_media_is_not_found():
    for digest in ("0" * 64, "../../etc/passwd", "A" * 64):
        with pytest.raises(NotFound) as caught:
            uploads.media_bytes(digest)
        assert caught.value.code == "media_not_found" and caught.value.status == 404


# ---- local storage ---------------------------------------------------------------------------

def test_local_storage_writes_atomically_and_rejects_escaping_keys(tmp_path):
    store = LocalStorage(root=tmp_path)
    store.put("ab/cd/x.jpg", b"one", "image/jpeg")
    store.put("ab/cd/x.jpg", b"two", "image/jpeg")
    assert store.get("ab/cd/x.jpg") == b"two" and store.exists("ab/cd/x.jpg")
    assert [p.name for p in (tmp_path / "ab" / "cd").iterdir()] == ["x.jpg"]  # no temp left
    assert store.get("ab/cd/missing.jpg") is None and not store.exists("ab/cd/missing.jpg")
    for key in ("../x.jpg", "/etc/passwd", "ab/../../x.jpg", "ab\\x.jpg"):
        with pytest.raises(ValueError):
            store.put(key, b"x", "image/jpeg")
