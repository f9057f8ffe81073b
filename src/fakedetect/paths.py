"""fakedetect's cache folder: extracted archives, hold-out splits and converted weights.

Everything in it can be made again (``fakedetect cache clear`` is always safe); nothing a user made lives there.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

KINDS = ("datasets", "weights")


def cache_dir() -> Path:
    """$FAKEDETECT_CACHE, else $XDG_CACHE_HOME/fakedetect (~/.cache/fakedetect)."""
    if os.environ.get("FAKEDETECT_CACHE"):
        return Path(os.environ["FAKEDETECT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fakedetect"


@dataclass
class CacheEntry:
    kind: str  # "datasets" or "weights"
    path: Path
    bytes: int


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def cache_entries() -> list[CacheEntry]:
    """Every top-level item under the cache's datasets/ and weights/ folders, largest first."""
    out = []
    for kind in KINDS:
        folder = cache_dir() / kind
        if folder.is_dir():
            out.extend(CacheEntry(kind, p, _size(p)) for p in sorted(folder.iterdir()))
    return sorted(out, key=lambda e: -e.bytes)


def clear_cache(entries: list[CacheEntry]) -> None:
    for e in entries:
        if e.path.is_dir() and not e.path.is_symlink():
            shutil.rmtree(e.path, ignore_errors=True)
        else:
            e.path.unlink(missing_ok=True)


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
