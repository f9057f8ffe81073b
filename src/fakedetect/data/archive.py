"""Archives of data sets (.tar.gz, .tgz, .tar, .zip): extracted once to the cache, keyed on content.

Archives are untrusted input. Every member is checked before anything is written: only files and folders (no
link, device or FIFO), no absolute or ``..`` path, a bounded number of members and of bytes, and tar members
whose offsets strictly increase (a looping tar never ends otherwise). Zip members are also counted while they
are written, since their declared sizes may lie. A truncated or corrupt archive is a :class:`DataError`.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from fakedetect.errors import ConfigError, DataError
from fakedetect.paths import cache_dir

try:
    import fcntl
except ImportError:  # Windows: no lock, a second extraction just loses the final rename
    fcntl = None

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")

MAX_BYTES = 50 * 2**30  # uncompressed bytes an archive may unpack; $FAKEDETECT_ARCHIVE_MAX_BYTES overrides
MAX_MEMBERS = 2_000_000  # files and folders an archive may hold; $FAKEDETECT_ARCHIVE_MAX_MEMBERS overrides
MAX_BYTES_ENV = "FAKEDETECT_ARCHIVE_MAX_BYTES"
MAX_MEMBERS_ENV = "FAKEDETECT_ARCHIVE_MAX_MEMBERS"

_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile, NotImplementedError)
_TAR_KINDS = {tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link", tarfile.CHRTYPE: "a character device",
              tarfile.BLKTYPE: "a block device", tarfile.FIFOTYPE: "a FIFO"}
_ZIP_KINDS = {stat.S_IFLNK: "a symbolic link", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
              stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}


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


def _limit(value: int | None, env: str, default: int) -> int:
    """``value`` if given, else $``env`` if set, else ``default``."""
    if value is not None:
        return int(value)
    raw = os.environ.get(env, "").strip().replace("_", "")
    if not raw:
        return default
    if not raw.isdigit():
        raise ConfigError(f"{env} must be a whole number, got {os.environ[env]!r}")
    return int(raw)


class _Budget:
    """Counts an archive's members and bytes, refusing past the limits with the variable that raises them."""

    def __init__(self, path: Path, max_bytes: int, max_members: int):
        self.path, self.max_bytes, self.max_members = path, max_bytes, max_members
        self.bytes = self.members = 0

    def add_member(self) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise DataError(f"{self.path} holds more than {self.max_members:,} members; refusing to extract it "
                            f"(set {MAX_MEMBERS_ENV} to a higher count if the archive is trusted)")

    def add_bytes(self, name: str, n: int) -> None:
        self.bytes += n
        if self.bytes > self.max_bytes:
            raise DataError(f"{self.path} unpacks to more than {self.max_bytes:,} bytes (reached at member {name!r}); "
                            f"refusing to extract it (set {MAX_BYTES_ENV} to a higher byte count if it is trusted)")


def _check_name(path: Path, name: str) -> PurePosixPath:
    """A member's path relative to the extraction folder; absolute and ``..`` paths are refused."""
    rel = PurePosixPath(name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or (rel.parts and rel.parts[0].endswith(":")):
        raise DataError(f"{path}: refusing archive member outside the folder: {name}")
    return rel


def _refuse(path: Path, name: str, kind: str) -> DataError:
    return DataError(f"{path}: refusing archive member {name!r}, which is {kind}; a data set needs only files and "
                     f"folders (nothing was extracted)")


def check_tar_offset(path: Path, member: tarfile.TarInfo, previous: int) -> int:
    """``member``'s offset, refused unless it is past ``previous`` (a tar whose headers point back loops)."""
    if member.offset <= previous:
        raise DataError(f"{path} is corrupt: member {member.name!r} at offset {member.offset} does not follow the "
                        f"previous one (at {previous}); refusing a tar whose members loop")
    return member.offset


def _check_tar_member(path: Path, m: tarfile.TarInfo, budget: _Budget) -> None:
    """Refuses anything but a file or a folder inside the extraction folder, and counts it."""
    budget.add_member()
    if not (m.isreg() or m.isdir()):
        kind = _TAR_KINDS.get(m.type, f"of unsupported type {m.type!r}")
        raise _refuse(path, m.name, kind + (f" to {m.linkname!r}" if m.issym() or m.islnk() else ""))
    _check_name(path, m.name)
    if m.size < 0:
        raise DataError(f"{path} is corrupt: member {m.name!r} has a negative size")
    if m.isreg():
        budget.add_bytes(m.name, m.size)


def _tar_members(path: Path, t: tarfile.TarFile, budget: _Budget) -> list[tarfile.TarInfo]:
    """Every member of ``t``, checked one by one as the headers are read (so a bomb stops at its header)."""
    members, previous = [], -1
    while (m := t.next()) is not None:
        previous = check_tar_offset(path, m, previous)
        _check_tar_member(path, m, budget)
        members.append(m)
    return members


def _extract_tar(path: Path, tmp: Path, budget: _Budget) -> None:
    with tarfile.open(path) as t:
        members = _tar_members(path, t, budget)
        t.extractall(tmp, members=members, filter="data")  # the filter stays as a second line of defence


def _zip_members(path: Path, z: zipfile.ZipFile, budget: _Budget) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Every member of ``z`` with its relative path, checked and counted on its declared size."""
    out = []
    for info in z.infolist():
        budget.add_member()
        fmt = stat.S_IFMT(info.external_attr >> 16)
        if fmt not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise _refuse(path, info.filename, _ZIP_KINDS.get(fmt, f"of unsupported mode {oct(fmt)}"))
        if info.flag_bits & 0x1:
            raise DataError(f"{path}: member {info.filename!r} is encrypted; extract the archive yourself")
        out.append((info, _check_name(path, info.filename)))
        budget.add_bytes(info.filename, info.file_size)
    return out


def copy_bounded(src, dst, name: str, budget: _Budget, chunk: int = 1 << 20) -> None:
    """Copies ``src`` to ``dst``, counting the bytes actually read against ``budget``."""
    while data := src.read(chunk):
        budget.add_bytes(name, len(data))
        dst.write(data)


def _extract_zip(path: Path, tmp: Path, budget: _Budget) -> None:
    written = _Budget(path, budget.max_bytes, budget.max_members)
    with zipfile.ZipFile(path) as z:
        for info, rel in _zip_members(path, z, budget):
            target = tmp.joinpath(*(p for p in rel.parts if p != "."))
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                copy_bounded(src, dst, info.filename, written)


def _extract(path: Path, tmp: Path, budget: _Budget) -> None:
    """Extracts ``path`` into ``tmp`` after checking all its members; a damaged archive is a DataError."""
    try:
        if zipfile.is_zipfile(path):
            _extract_zip(path, tmp, budget)
        else:
            _extract_tar(path, tmp, budget)
    except _CORRUPT as e:
        raise DataError(f"{path} is truncated or corrupt, or not an archive ({type(e).__name__}: {e}); "
                        f"download or copy it again") from e


@contextlib.contextmanager
def _lock(dest: Path, path: Path) -> Iterator[None]:
    """Holds ``.<dest>.lock`` beside ``dest`` so that a second process waits for the first's extraction."""
    if fcntl is None:
        yield
        return
    lock = dest.parent / f".{dest.name}.lock"
    with open(lock, "a") as f:
        try:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info(f"waiting for another process extracting {path}")
                fcntl.flock(f, fcntl.LOCK_EX)
        except OSError as e:  # a file system without locks: go on, the final rename copes with a race
            log.debug(f"no lock on {lock}: {e}")
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)  # whoever waits on it re-checks dest once it has the lock
            with contextlib.suppress(OSError):
                fcntl.flock(f, fcntl.LOCK_UN)


def _publish(tmp: Path, dest: Path) -> None:
    """Renames the finished ``tmp`` to ``dest``; if another process got there first, its copy is kept."""
    try:
        tmp.rename(dest)
    except OSError:
        if not dest.is_dir():
            raise
        log.info(f"{dest} was extracted meanwhile by another process; using it")


def resolve_data(path: str | Path, cache: Path | None = None, quiet: bool = False,
                 max_bytes: int | None = None, max_members: int | None = None) -> Path:
    """Returns a folder for ``path``: the folder itself, or an archive's contents extracted (once) to a cache.

    Extraction goes to a temporary folder renamed into place when complete, so an interrupted extraction is
    never mistaken for a finished one. All members are checked before anything is written (see the module's
    docstring); ``max_bytes`` and ``max_members`` (default $FAKEDETECT_ARCHIVE_MAX_BYTES and
    $FAKEDETECT_ARCHIVE_MAX_MEMBERS, else :data:`MAX_BYTES` and :data:`MAX_MEMBERS`) bound what it may unpack.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data not found: {path}")
    if path.is_dir():
        return path
    if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise DataError(f"{path} is a file, not a folder or an archive ({', '.join(ARCHIVE_SUFFIXES)})")
    max_bytes = _limit(max_bytes, MAX_BYTES_ENV, MAX_BYTES)
    budget = _Budget(path, max_bytes, _limit(max_members, MAX_MEMBERS_ENV, MAX_MEMBERS))

    dest = (cache or cache_dir() / "datasets") / f"{set_name(path)}-{archive_fingerprint(path)}"
    if dest.is_dir():
        if not quiet:
            log.info(f"reusing {dest} (extracted earlier from {path})")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _lock(dest, path):
        if dest.is_dir():  # another process extracted it while we waited
            return dest
        log.info(f"extracting {path} to {dest} (once)")
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            _extract(path, tmp, budget)
            _publish(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return dest
