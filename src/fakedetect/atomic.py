"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A reader never sees a half-written file: either the old one, or the complete new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yields a temporary path in the target's folder; renames it onto ``target`` on success.

    Args:
        target: the final file path.
        suffix: suffix of the temporary file (some writers infer the format from it, e.g. ``.png``,
            ``.keras``); defaults to the target's own suffix.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix if suffix is not None else target.suffix, dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def fresh_dir(path: str | os.PathLike, overwrite: bool, what: str = "output folder",
              error: type[FileExistsError] = FileExistsError) -> Path:
    """Creates ``path``; refuses one that already holds files unless ``overwrite`` (never clobber a user's run)."""
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise error(f"{what} {path} already exists and is not empty; choose another --out, "
                    "or pass --overwrite to replace its files")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars and paths turn up in summaries; keep json.dumps from failing on them.
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
