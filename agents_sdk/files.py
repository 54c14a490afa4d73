"""Writing a file atomically: readers see the old content or the new, never a part."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes, *, mode: int | None = None, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` through a synced temporary file in the same directory.

    The temporary file is created 0600 (mkstemp), then given ``mode`` before it takes the
    path, so the content is never briefly readable wider. Without ``overwrite``, an existing
    ``path`` raises FileExistsError and is left as it is.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp_name, mode)
        if overwrite:
            os.replace(tmp_name, path)
        else:
            # link() fails if the target exists, so a file created meanwhile is never clobbered.
            try:
                os.link(tmp_name, path)
            except FileExistsError:
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
            os.unlink(tmp_name)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
