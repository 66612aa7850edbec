"""A content hash of a data file or folder, so a result names exactly the data it was computed on."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1 << 20


def _hash_stream(fh: BinaryIO, digest: hashlib._Hash) -> None:
    for chunk in iter(lambda: fh.read(_CHUNK), b""):
        digest.update(chunk)


def content_sha256(data: str | os.PathLike | bytes) -> str:
    """SHA-256 of a file's bytes, of given bytes, or of a folder (every file's relative path and
    bytes, in sorted order, hidden entries skipped). Raises FileNotFoundError for a missing path."""
    digest = hashlib.sha256()
    if isinstance(data, (bytes, bytearray)):
        digest.update(data)
        return digest.hexdigest()
    path = Path(data).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"not found: {str(path)!r}")
    if path.is_file():
        with open(path, "rb") as fh:
            _hash_stream(fh, digest)
        return digest.hexdigest()
    files = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        files += [Path(dirpath) / f for f in filenames if not f.startswith(".")]
    for f in sorted(files):
        digest.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            _hash_stream(fh, digest)
    return digest.hexdigest()
