"""Where labelled images are on disk: class folders (real/, fake/) directly or under split folders.

Layouts accepted (class folder names are case-insensitive):
    DATA/real, DATA/fake                       (also 0_real / 1_fake)
    DATA/{train,val,test}/{real,fake}          (any other split folder name is kept as a split too)
Labels are fixed, whatever the folder order: real = 0, fake = 1.
"""

from __future__ import annotations

import os
from pathlib import Path

from fakedetect import CLASS_NAMES
from fakedetect.data.archive import resolve_data
from fakedetect.errors import DataError

CLASS_ALIASES = {"real": 0, "0_real": 0, "fake": 1, "1_fake": 1}

SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}


def _class_dirs(folder: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        label = CLASS_ALIASES.get(d.name.lower())
        if label is not None:
            if label in found:
                raise DataError(f"two folders for class '{CLASS_NAMES[label]}' in {folder}: "
                                f"{found[label].name} and {d.name}")
            found[label] = d
    return found


def list_files(folder: Path) -> list[Path]:
    """All non-hidden files under ``folder``, sorted; symlinked folders are not followed (no loops)."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
    return out


def discover(root: str | Path, require_both: bool = True) -> dict[str, dict[int, list[Path]]]:
    """Finds the splits and class folders under ``root``.

    Args:
        require_both: a missing or empty class folder is an error (training); False allows one (evaluation).

    Returns:
        split name -> label -> sorted file paths. A root holding class folders directly gives one split, "all".

    Raises:
        DataError: the root is missing, has no class folders, or a class folder is missing or empty.
    """
    root = resolve_data(root, quiet=True)  # the command said where the archive went
    if not root.is_dir():
        raise DataError(f"not a folder: {root} (expected a folder holding real/ and fake/)")
    layout: dict[str, dict[int, Path]] = {}
    direct = _class_dirs(root)
    if direct:
        layout["all"] = direct
    else:
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            classes = _class_dirs(d)
            if classes:
                layout[SPLIT_ALIASES.get(d.name.lower(), d.name)] = classes
    if not layout:
        subdirs = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir())[:10]) or "none"
        raise DataError(f"no class folders in {root}: expected real/ and fake/ (or 0_real/ and 1_fake/), "
                        f"directly or under train/ val/ test/. Sub-folders found: {subdirs}")
    out: dict[str, dict[int, list[Path]]] = {}
    for split, classes in layout.items():
        where = root if split == "all" else root / split
        for label, name in enumerate(CLASS_NAMES):
            if label not in classes and require_both:
                raise DataError(f"missing class folder '{name}/' in {where}")
        out[split] = {}
        for label, d in classes.items():
            files = list_files(d)
            if not files and require_both:
                raise DataError(f"class folder is empty: {d} (every class needs at least one image)")
            out[split][label] = files
        if not any(out[split].values()):
            raise DataError(f"no files in the class folders of {where}")
    return out


def choose_split(layout: dict, preferred: str, root: str | Path) -> str:
    """The split to use: ``preferred`` if present, else the folder's single split (or "all")."""
    if preferred in layout:
        return preferred
    if len(layout) == 1:
        return next(iter(layout))
    raise DataError(f"{root} has splits {', '.join(layout)} but no '{preferred}' split: "
                    "point the command at one of them")


def unique_names(names: list[str]) -> list[str]:
    """The names, with "-2", "-3", ... added to repeats until every one is unused."""
    out: list[str] = []
    for n in names:
        name, k = n, 1
        while name in out or (name != n and name in names):
            k += 1
            name = f"{n}-{k}"
        out.append(name)
    return out
