"""sha256 of a file or a folder: the one hashing helper of the zoo (preset checksums) and export (manifests)."""

from __future__ import annotations

import hashlib
import os
from typing import Iterator


def files(path: str | os.PathLike) -> Iterator[str]:
    """`path` itself if it is a file, else every file under it, in sorted (stable) order."""
    if os.path.isdir(path):
        for root, _, names in sorted(os.walk(path)):
            for name in sorted(names):
                yield os.path.join(root, name)
    else:
        yield os.fspath(path)


def sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes; of a folder, over each file's relative path and bytes, in sorted order."""
    digest = hashlib.sha256()
    folder = os.path.isdir(path)
    for name in files(path):
        if folder:
            digest.update(os.path.relpath(name, path).encode())
        with open(name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
