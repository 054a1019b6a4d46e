"""Files that appear complete or not at all.

A file is written under a hidden temporary name in its own folder, flushed to disk, then renamed over its
target: a rename within one file system replaces the target in one step, so a process killed while writing
leaves the previous file (or none) and at worst a stray ``.<name>.<pid>-<random>.tmp`` beside it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_atomically(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write the whole file to; when the block ends without an error,
    the file is flushed to disk and renamed to ``path``, otherwise it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        yield temporary
        _sync(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync(path.parent)  # the rename itself reaches the disk


def _sync(path: Path) -> None:
    """fsync a file or folder; a file system that cannot sync a folder (some network mounts) is not an error."""
    folder = path.is_dir()
    try:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError:
        if not folder:
            raise
