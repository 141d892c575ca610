"""POST /api/v1/uploads, and GET /media/<sha256>.jpg serving the stored images."""

from __future__ import annotations

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from app.blueprints.common import rate_limited
from app.blueprints.uploads.schemas import UploadFormSchema, UploadSchema
from app.security import RESIDENT, access, current_user_id, role_required
from app.services import uploads

blp = Blueprint("uploads", __name__, description="Photo uploads and the media they are served from")
UPLOADERS = (RESIDENT, "staff", "manager", "grid_worker", "courier", "admin")
MEDIA_CACHE_CONTROL = "public, max-age=31536000, immutable"


@blp.route("/api/v1/uploads")
class Uploads(MethodView):
    @role_required(*UPLOADERS)
    @blp.arguments(UploadFormSchema, location="files")
    @blp.response(201, UploadSchema)
    @rate_limited(blp, "too many uploads from the user in the window")
    def post(self, form):
        """Upload a photo (multipart field `file`); the same photo twice returns the same upload."""
        return uploads.create_upload(owner_id=current_user_id(), data=form["file"].read())


@blp.route("/media/<string:digest>.jpg")
class Media(MethodView):
    @access("public: content-addressed image, unguessable 256-bit name, no metadata")
    def get(self, digest):
        """A stored image by its sha256: public, immutable, cacheable forever."""
        response = Response(uploads.media_bytes(digest), mimetype=uploads.MIME_TYPE)
        response.set_etag(digest)
        response.headers["Cache-Control"] = MEDIA_CACHE_CONTROL
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response.make_conditional(request)
