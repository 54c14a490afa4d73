"""The last good bundle, persisted on disk."""


from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from agents_sdk.bundles.archive import Bundle
from agents_sdk.bundles.format import _now
from agents_sdk.files import write_atomically

# -- persistence ------------------------------------------------------------------------


class BundleStore:
    """The last good bundle on disk: ``bundle.tar.gz`` and ``bundle.json`` (its ETag and
    SHA-256), each written to a temporary file and renamed, so a crash leaves the old or
    the new file, never half of one."""

    ARCHIVE = "bundle.tar.gz"
    METADATA = "bundle.json"

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)

    def save(self, bundle: Bundle) -> None:
        """Write ``bundle``'s archive and ETag. Raises OSError if the directory is not writable."""
        self.directory.mkdir(parents=True, exist_ok=True)
        metadata = {
            "etag": bundle.etag,
            "revision": bundle.revision,
            "sha256": hashlib.sha256(bundle.archive).hexdigest(),
            "saved_at": _now(),
        }
        write_atomically(self.directory / self.ARCHIVE, bundle.archive)
        write_atomically(self.directory / self.METADATA, json.dumps(metadata, sort_keys=True).encode("utf-8"))

    def load(self) -> tuple[bytes, str] | None:
        """The persisted archive and its ETag, or None when nothing was saved. The ETag is
        dropped ("") if the metadata does not describe this archive."""
        try:
            archive = (self.directory / self.ARCHIVE).read_bytes()
        except FileNotFoundError:
            return None
        etag = ""
        try:
            metadata = json.loads((self.directory / self.METADATA).read_text("utf-8"))
            if metadata.get("sha256") == hashlib.sha256(archive).hexdigest():
                etag = str(metadata.get("etag") or "")
        except (OSError, ValueError, AttributeError):
            pass
        return archive, etag
