"""Photo uploads: decode for real, auto-rotate, read GPS, strip metadata, store by content hash.

Public URLs are content-addressed (`/media/<sha256>.jpg`) rather than `/api/v1/uploads/<id>/...`:
the mini-program's `<image>` component cannot send an Authorization header, a hash URL never
changes meaning so it can be cached forever (`immutable`) by phones and a CDN, identical photos
from different users share one file, and the 256-bit name cannot be enumerated like an id.
Every stored image is re-encoded from pixels only, so a public URL leaks no EXIF/GPS.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
from dataclasses import dataclass

from flask import current_app, has_app_context
from PIL import ExifTags, Image, ImageOps
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app import ratelimit
from app.errors import APIError, NotFound, TooLarge, ValidationFailed
from app.extensions import db
from app.models import Upload, User
from app.storage import get_storage

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
# Well under Pillow's own bomb limit (~89 MP), so ours is the check that bites first.
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_RATE_LIMIT = 60
DEFAULT_RATE_WINDOW_SECONDS = 3600
MAX_SIDE = 2048
THUMB_SIDE = 400
JPEG_QUALITY = 85
MIME_TYPE = "image/jpeg"
# Pillow's JPEG opener also yields "MPO" images, the multi-picture JPEGs many phones write.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")
DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
MEDIA_PATH = "/media/{digest}.jpg"
INVALID_IMAGE_MESSAGE = "无法识别这张照片，请重新拍摄或选择 JPG、PNG、WebP 格式的照片"


@dataclass(frozen=True)
class NormalisedImage:
    """A photo ready to store: clean JPEG bytes, its thumbnail and what was read from it."""

    image: bytes
    thumb: bytes
    width: int
    height: int
    location: tuple[float, float] | None


def create_upload(*, owner_id: int, data: bytes) -> Upload:
    """Store a photo for `owner_id`; the same photo from the same user returns the same row."""
    _take_rate_limit(owner_id)
    _check_byte_size(data)
    prepared = normalise_image(data, max_pixels=_config("UPLOAD_MAX_PIXELS", DEFAULT_MAX_PIXELS))
    digest = sha256_hex(prepared.image)
    existing = _find(owner_id, digest)
    if existing is not None:
        return existing
    thumb_hash = sha256_hex(prepared.thumb)
    _store(digest, prepared.image)
    _store(thumb_hash, prepared.thumb)
    return _insert(owner_id=owner_id, digest=digest, thumb_hash=thumb_hash, prepared=prepared)


def attachable(owner_id: int, upload_ids: list[int]) -> list[Upload]:
    """The caller's own uploads in the given order (repeats dropped), else 422 photo_not_found."""
    wanted = list(dict.fromkeys(upload_ids))
    if not wanted:
        return []
    rows = db.session.scalars(
        select(Upload).where(Upload.id.in_(wanted), Upload.owner_id == owner_id))
    by_id = {upload.id: upload for upload in rows}
    missing = [upload_id for upload_id in wanted if upload_id not in by_id]
    if missing:
        message = "照片不存在或已失效，请重新选择"
        raise ValidationFailed(message, code="photo_not_found",
                               details={"fields": {"photo_ids": [message]}, "photo_ids": missing})
    return [by_id[upload_id] for upload_id in wanted]


def public_urls(upload: Upload) -> dict:
    """The public `url` and `thumb_url` of an upload (content-addressed, cacheable forever)."""
    return {"url": media_url(upload.sha256), "thumb_url": media_url(upload.thumb_hash)}


def media_url(digest: str) -> str:
    """The public path (or MEDIA_BASE_URL-prefixed URL) of a stored image."""
    base = current_app.config.get("MEDIA_BASE_URL", "") if has_app_context() else ""
    return base.rstrip("/") + MEDIA_PATH.format(digest=digest)


def media_bytes(digest: str) -> bytes:
    """The stored JPEG named by its sha256, or 404 media_not_found."""
    data = get_storage().get(storage_key(digest)) if DIGEST_RE.match(digest) else None
    if data is None:
        raise NotFound("图片不存在", code="media_not_found")
    return data


def storage_key(digest: str) -> str:
    """Where a JPEG lives in storage: `ab/cd/<sha256>.jpg`."""
    return f"{digest[:2]}/{digest[2:4]}/{digest}.jpg"


def sha256_hex(data: bytes) -> str:
    """The hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def normalise_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> NormalisedImage:
    """Decode, rotate upright, downscale and re-encode from pixels only (no metadata survives)."""
    image = decode_image(data, max_pixels=max_pixels)
    try:
        return _normalise_decoded(image)
    except (APIError, MemoryError):
        raise
    except Exception as exc:  # an exotic mode or a broken profile Pillow cannot process
        log.warning("could not normalise an uploaded image", exc_info=True)
        raise _invalid_image() from exc


def _normalise_decoded(image: Image.Image) -> NormalisedImage:
    """The processing steps after a successful decode."""
    location = read_gps(image.getexif())
    ImageOps.exif_transpose(image, in_place=True)
    image = _to_working_mode(_to_srgb(image))
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0)
    clean = flatten_pixels(image)
    thumb = clean.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    return NormalisedImage(image=encode_jpeg(clean), thumb=encode_jpeg(thumb),
                           width=clean.width, height=clean.height, location=location)


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Fully decode JPEG/PNG/WebP bytes: 422 invalid_image, or image_too_large past the limit."""
    if not data:
        raise _invalid_image()
    try:
        _open_within_limit(data, max_pixels).verify()
        image = _open_within_limit(data, max_pixels)
        if image.format in ("JPEG", "MPO"):
            image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # decode big JPEGs at a reduced scale
        image.load()
    except APIError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many_pixels(max_pixels) from exc
    except Exception as exc:  # Pillow raises many types for corrupt input; all mean "not an image"
        raise _invalid_image() from exc
    return image


def _open_within_limit(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) and refuse dimensions over the limit before decoding any pixel."""
    image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    width, height = image.size
    if width * height > max_pixels:
        raise _too_many_pixels(max_pixels)
    return image


def read_gps(exif: Image.Exif) -> tuple[float, float] | None:
    """Decimal (lat, lng) from the EXIF GPS IFD, or None when absent, partial or implausible."""
    try:
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    except Exception:  # a malformed GPS IFD is just "no location"
        return None
    lat = _degrees(gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLatitudeRef), "S")
    lng = _degrees(gps.get(ExifTags.GPS.GPSLongitude), gps.get(ExifTags.GPS.GPSLongitudeRef), "W")
    if lat is None or lng is None or abs(lat) > 90 or abs(lng) > 180:
        return None
    if lat == 0 and lng == 0:  # cameras without a fix often write zeros
        return None
    return round(lat, 6), round(lng, 6)


def _degrees(dms, ref, negative_ref: str) -> float | None:
    """Degrees/minutes/seconds rationals to signed decimal degrees (S and W are negative)."""
    try:
        parts = [float(value) for value in dms][:3]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = sum(part / 60**i for i, part in enumerate(parts))
    if not parts or not math.isfinite(value):
        return None
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", "ignore")
    return -value if str(ref or "").strip().upper().startswith(negative_ref) else value


def _to_srgb(image: Image.Image) -> Image.Image:
    """Convert pixels to sRGB when an ICC profile says otherwise, so stripping it keeps colours."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return image
    try:
        from PIL import ImageCms

        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        mode = "RGBA" if image.mode == "RGBA" else "RGB"
        return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"),
                                         outputMode=mode)
    except Exception:  # a broken or unsupported profile: keep the pixels as decoded
        log.info("ignoring an unusable ICC profile", exc_info=True)
        return image


def _to_working_mode(image: Image.Image) -> Image.Image:
    """RGBA when the image has transparency, else RGB (palette, grey, CMYK, 16-bit...)."""
    target = "RGBA" if image.has_transparency_data else "RGB"
    return image if image.mode == target else image.convert(target)


def flatten_pixels(image: Image.Image) -> Image.Image:
    """A fresh RGB image holding only the pixels; transparency is flattened onto white."""
    canvas = Image.new("RGB", image.size, "white")
    canvas.paste(image, mask=image if image.mode == "RGBA" else None)
    return canvas


def encode_jpeg(image: Image.Image) -> bytes:
    """Encode as a progressive JPEG with no metadata."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
    return buffer.getvalue()


def _take_rate_limit(owner_id: int) -> None:
    """Count one upload for the user; 429 past UPLOAD_RATE_LIMIT per window."""
    ratelimit.take(f"uploads:{owner_id}", _config("UPLOAD_RATE_LIMIT", DEFAULT_RATE_LIMIT),
                   _config("UPLOAD_RATE_WINDOW_SECONDS", DEFAULT_RATE_WINDOW_SECONDS),
                   "上传照片太频繁，请稍后再试")


def _check_byte_size(data: bytes) -> None:
    """413 too_large past UPLOAD_MAX_BYTES."""
    max_bytes = _config("UPLOAD_MAX_BYTES", DEFAULT_MAX_BYTES)
    if len(data) > max_bytes:
        megabytes = max_bytes // (1024 * 1024)
        raise TooLarge(f"照片不能超过 {megabytes} MB", code="too_large",
                       details={"max_bytes": max_bytes})


def _find(owner_id: int, digest: str) -> Upload | None:
    """The user's existing upload of this exact content."""
    return db.session.scalar(
        select(Upload).where(Upload.owner_id == owner_id, Upload.sha256 == digest))


def _store(digest: str, data: bytes) -> None:
    """Write a JPEG under its hash unless an identical one is already stored."""
    storage = get_storage()
    key = storage_key(digest)
    if not storage.exists(key):
        storage.put(key, data, MIME_TYPE)


def _insert(*, owner_id: int, digest: str, thumb_hash: str,
            prepared: NormalisedImage) -> Upload:
    """Write the row; a concurrent twin of the same upload wins and is returned instead."""
    owner = db.session.get(User, owner_id)
    lat, lng = prepared.location or (None, None)
    upload = Upload(owner_id=owner_id, community_id=owner.community_id if owner else None,
                    sha256=digest, thumb_hash=thumb_hash, mime_type=MIME_TYPE,
                    width=prepared.width, height=prepared.height,
                    byte_size=len(prepared.image), suggested_lat=lat, suggested_lng=lng)
    db.session.add(upload)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        existing = _find(owner_id, digest)
        if existing is None:
            raise
        return existing
    return upload


def _config(name: str, default: int) -> int:
    return int(current_app.config.get(name, default))


def _invalid_image() -> ValidationFailed:
    return ValidationFailed(INVALID_IMAGE_MESSAGE, code="invalid_image",
                            details={"fields": {"file": [INVALID_IMAGE_MESSAGE]}})


def _too_many_pixels(max_pixels: int) -> ValidationFailed:
    message = f"照片像素过大（最多 {max_pixels // 1_000_000} 百万像素），请缩小后再上传"
    return ValidationFailed(message, code="image_too_large",
                            details={"fields": {"file": [message]}, "max_pixels": max_pixels})
