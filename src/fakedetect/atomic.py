"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A reader never sees a half-written file: either the old one, or the complete new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fakedetect.errors import OutputExistsError


def _umask_at_import() -> int:
    # os.umask can only be read by setting it: done once, while fakedetect is imported, not while threads write.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _umask_at_import()


def current_umask() -> int:
    """The process's umask, read without changing it (Linux's /proc/self/status; elsewhere the umask that the
    process had when fakedetect was imported)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _UMASK_AT_IMPORT


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # C0, DEL, C1, and the two Unicode line breaks
FORMULA_STARTS = ("=", "+", "-", "@")


def escape_controls(text: str) -> str:
    """``text`` with every control character written as ``\\xNN``: a file name with a newline cannot forge a line
    of a text file or a terminal escape sequence."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def safe_cell(text: str) -> str:
    """A file name as a cell of a table a person may open in a spreadsheet: control characters escaped, and a
    leading ``= + - @`` (a formula to Excel, LibreOffice and Google Sheets) shown as text by a leading ``'``."""
    text = escape_controls(text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_csv(target: str | os.PathLike, table, name_columns: tuple[str, ...] = ("path",)) -> None:
    """Writes a pandas table as CSV atomically, its file-name columns through :func:`safe_cell`."""
    table = table.assign(**{c: table[c].map(safe_cell) for c in name_columns if c in table.columns})
    with atomic_path(target, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)


def write_skipped(target: str | os.PathLike, skipped) -> None:
    """Writes ``skipped.txt``: one ``path<TAB>reason`` line per (path, reason), both through :func:`safe_cell`."""
    write_text(target, "".join(f"{safe_cell(p)}\t{safe_cell(why)}\n" for p, why in skipped))


def publish_dir(path: str | os.PathLike) -> None:
    """Gives a folder made private by ``tempfile`` (0700) the permissions of a folder made with the umask."""
    os.chmod(path, 0o777 & ~current_umask())


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
    os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600; the result is a file like any other
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def check_out_dir(path: str | os.PathLike, overwrite: bool, what: str = "output folder",
                  error: type[FileExistsError] = OutputExistsError) -> Path:
    """Raises ``error`` unless ``path`` can become a fresh output folder (checked before any work starts)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise error(f"{what} {path} is a file, not a folder; choose another --out")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise error(f"{what} {path} already exists and is not empty; choose another --out, "
                    "or pass --overwrite to replace its files")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise error(f"cannot create {what} {path}: {parent} is a file")
            break
    return path


def fresh_dir(path: str | os.PathLike, overwrite: bool, what: str = "output folder",
              error: type[FileExistsError] = OutputExistsError) -> Path:
    """Creates ``path``; refuses one that already holds files unless ``overwrite`` (never clobber a user's run).

    Creating the folder is the claim: a new folder is made with one ``mkdir`` that fails if it exists, so of two
    commands started together for the same new folder only one gets it; the other is refused.
    """
    path = check_out_dir(path, overwrite, what, error)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()
    except FileExistsError:
        # It existed at the check (empty, or --overwrite), or another command claimed it since then.
        if not overwrite and any(path.iterdir()):
            raise error(f"{what} {path} was just created by another command; choose another --out") from None
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
