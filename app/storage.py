"""Where uploaded bytes live: a small storage interface and the local-disk implementation.

Keys are relative, slash-separated paths such as `ab/cd/<sha256>.jpg`. The default store is
`LocalStorage(root=UPLOAD_DIR)`; another implementation (an object store) can be installed as
`app.extensions["linli_storage"]` without touching the services.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

from flask import current_app

KEY_RE = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*\.[a-z0-9]{1,5}$")
FILE_MODE = 0o644


class Storage(Protocol):
    """What the upload service needs from a blob store."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store `data` under `key`, replacing any previous content atomically."""

    def get(self, key: str) -> bytes | None:
        """The bytes stored under `key`, or None."""

    def exists(self, key: str) -> bool:
        """Whether something is stored under `key`."""

    def open(self, key: str) -> BinaryIO | None:
        """A readable binary file for `key`, or None."""


class LocalStorage:
    """Blobs as files under `root`, each written to a temp file then renamed into place."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """The file path of `key`; rejects keys that could escape the root."""
        if not KEY_RE.match(key):
            raise ValueError(f"invalid storage key: {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write `data` atomically: readers see the old file or the whole new one, never half."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.chmod(tmp_name, FILE_MODE)
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise

    def get(self, key: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self.path(key).is_file()

    def open(self, key: str) -> BinaryIO | None:
        """The file opened for reading, or None when it does not exist."""
        try:
            return self.path(key).open("rb")
        except FileNotFoundError:
            return None


def get_storage() -> Storage:
    """The app's store: the one installed in app.extensions, else local disk at UPLOAD_DIR."""
    installed = current_app.extensions.get("linli_storage")
    if installed is not None:
        return installed
    return LocalStorage(root=current_app.config["UPLOAD_DIR"])
