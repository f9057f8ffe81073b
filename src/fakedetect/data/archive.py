"""Archives of data sets (.tar.gz, .tgz, .tar, .zip): extracted once to the cache, keyed on content."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

from fakedetect.errors import DataError
from fakedetect.paths import cache_dir

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def archive_fingerprint(path: Path, sample: int = 1 << 20) -> str:
    """A key for an archive's extracted copy: its resolved path, size, modification time and the bytes of its
    first and last MiB (so a different archive under the same name never reuses another one's folder)."""
    path = Path(path).resolve()
    st = path.stat()
    h = hashlib.sha1(f"{path}\n{st.st_size}\n{st.st_mtime_ns}\n".encode())
    with open(path, "rb") as f:
        h.update(f.read(sample))
        if st.st_size > sample:
            f.seek(max(sample, st.st_size - sample))
            h.update(f.read(sample))
    return h.hexdigest()[:12]


def folder_fingerprint(root: Path, files: Iterable[Path]) -> str:
    """A key for data derived from a folder: its resolved path and every file's relative path, size and mtime."""
    root = Path(root).resolve()
    h = hashlib.sha1(f"{root}\n".encode())
    for f in sorted(str(p) for p in files):
        try:
            st = os.stat(f)
            h.update(f"{os.path.relpath(f, root)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f}\t-\n".encode())
    return h.hexdigest()[:12]


def set_name(path: str | Path) -> str:
    """A data set's short name: its folder's or archive's name without the archive suffix."""
    name = Path(path).name or Path(path).resolve().name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def resolve_data(path: str | Path, cache: Path | None = None, quiet: bool = False) -> Path:
    """Returns a folder for ``path``: the folder itself, or an archive's contents extracted (once) to a cache.

    Extraction goes to a temporary folder renamed into place when complete, so an interrupted extraction is
    never mistaken for a finished one; members that would land outside the folder are refused.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data not found: {path}")
    if path.is_dir():
        return path
    if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise DataError(f"{path} is a file, not a folder or an archive ({', '.join(ARCHIVE_SUFFIXES)})")

    dest = (cache or cache_dir() / "datasets") / f"{set_name(path)}-{archive_fingerprint(path)}"
    if dest.is_dir():
        if not quiet:
            log.info(f"reusing {dest} (extracted earlier from {path})")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info(f"extracting {path} to {dest} (once)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    if Path(name).is_absolute() or ".." in Path(name).parts:
                        raise DataError(f"{path}: refusing archive member outside the folder: {name}")
                z.extractall(tmp)
        else:
            try:
                with tarfile.open(path) as t:
                    t.extractall(tmp, filter="data")
            except tarfile.TarError as e:
                raise DataError(f"{path} is not a readable archive: {e}") from e
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
