"""Photos uploaded by residents and staff, stored once on disk under their content hash."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


class Upload(Base):
    """One user's photo: the normalised JPEG (metadata stripped) and its thumbnail.

    The same user uploading the same picture twice gets the same row back
    (unique owner + hash); identical content from different users shares one file.
    """

    __tablename__ = "uploads"
    __table_args__ = (UniqueConstraint("owner_id", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    thumb_hash: Mapped[str] = mapped_column(String(64))
    mime_type: Mapped[str] = mapped_column(String(32), default="image/jpeg")
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    byte_size: Mapped[int] = mapped_column(Integer)
    suggested_lat: Mapped[float | None] = mapped_column(Float)
    suggested_lng: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def suggested_location(self) -> dict | None:
        """Where the photo says it was taken (EXIF GPS, WGS-84), or None."""
        if self.suggested_lat is None or self.suggested_lng is None:
            return None
        return {"lat": self.suggested_lat, "lng": self.suggested_lng}
