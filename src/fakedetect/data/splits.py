"""Checked images of one split (:class:`Split`), subsets, the validation carve and hold-out folders."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fakedetect import CLASS_NAMES
from fakedetect.data.checks import check_images
from fakedetect.data.layout import discover
from fakedetect.errors import DataError, OutputExistsError


@dataclass
class Split:
    """Checked images of one split, as columns (tf.data and numpy want columns): one entry per image in each of
    :attr:`COLUMNS`, added only through :meth:`add` and selected only through :meth:`take`, which keep them in
    step; and the files that were skipped, with the reason."""

    name: str
    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    pillow_only: list[bool] = field(default_factory=list)
    pixels: list[int] = field(default_factory=list)  # width * height per image
    digests: list[str] = field(default_factory=list)  # sha1 of each file's bytes (to find test/train overlap)
    sources: list[int] = field(default_factory=list)  # which data source (of several --data) each image is from
    formats: list[str] = field(default_factory=list)  # file format by content (JPEG, PNG, ...)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    COLUMNS = ("paths", "labels", "pillow_only", "pixels", "digests", "sources", "formats")

    def counts(self) -> dict[str, int]:
        arr = np.asarray(self.labels, dtype=int)
        return {name: int((arr == i).sum()) for i, name in enumerate(CLASS_NAMES)}

    def __len__(self) -> int:
        return len(self.paths)

    def add(self, path: str, label: int, pillow_only: bool, pixels: int, digest: str, source: int = 0,
            fmt: str = "") -> None:
        """Appends one checked image to every column."""
        for col, value in zip(self.COLUMNS, (path, label, pillow_only, pixels, digest, source, fmt), strict=True):
            getattr(self, col).append(value)

    @classmethod
    def join(cls, name: str, parts: list[Split]) -> Split:
        """One split of several sources' splits, in order; the images of ``parts[k]`` get source ``k``."""
        out = cls(name)
        for k, part in enumerate(parts):
            for col in cls.COLUMNS:
                getattr(out, col).extend([k] * len(part) if col == "sources" else getattr(part, col))
            out.skipped.extend(part.skipped)
        return out

    def source_counts(self) -> np.ndarray:
        """(sources, 2) image counts per source and class."""
        n = max(self.sources, default=-1) + 1
        out = np.zeros((n, 2), int)
        np.add.at(out, (np.asarray(self.sources, int), np.asarray(self.labels, int)), 1)
        return out

    def take(self, keep: Iterable[int], name: str | None = None) -> Split:
        """A new split of the images at positions ``keep`` (in that order); ``skipped`` is not copied."""
        keep = [int(i) for i in keep]
        out = Split(name or self.name)
        for col in self.COLUMNS:
            values = getattr(self, col)
            setattr(out, col, [values[i] for i in keep] if values else [])
        return out

    def without(self, drop: Iterable[int], reason: str) -> Split:
        """A copy without the images at positions ``drop``, which join ``skipped`` with ``reason``."""
        drop = set(int(i) for i in drop)
        out = self.take(i for i in range(len(self)) if i not in drop)
        out.skipped = list(self.skipped) + [(self.paths[i], reason) for i in sorted(drop)]
        return out


def subsample(files: dict[int, list[Path]], max_per_class: int | None, seed: int) -> dict[int, list[Path]]:
    """At most ``max_per_class`` files per class, drawn with a fixed seed (a stratified subset)."""
    if max_per_class is None:
        return files
    rng = np.random.default_rng(seed)
    out = {}
    for label, paths in files.items():
        if len(paths) > max_per_class:
            idx = np.sort(rng.choice(len(paths), max_per_class, replace=False))
            paths = [paths[i] for i in idx]
        out[label] = paths
    return out


def to_split(name: str, files: dict[int, list[Path]], require_both: bool = True) -> Split:
    """Checks the files of one split and keeps the usable ones; an emptied class is an error if ``require_both``."""
    flat = [(p, label) for label in sorted(files) for p in files[label]]
    infos = check_images([p for p, _ in flat], hash_bytes=True, tf_verify=True, what=f"{name} files")
    split = Split(name)
    for (_, label), info in zip(flat, infos, strict=True):
        if info.error:
            split.skipped.append((info.path, info.error))
        else:
            split.add(info.path, label, not info.tf_decodable, info.width * info.height, info.sha1,
                      fmt=info.format or "")
    for label, n in enumerate(split.counts().values()):
        if n == 0 and (require_both or not split.paths):
            raise DataError(f"no readable '{CLASS_NAMES[label]}' image in split '{name}' "
                            f"({len(files.get(label, []))} files, all unreadable)")
    return split


def carve_validation(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Stratified train/validation split of ``split`` with a fixed seed (at least one image per class)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(split.labels)
    val_idx = []
    for label in range(len(CLASS_NAMES)):
        idx = np.flatnonzero(labels == label)
        if len(idx) < 2:
            raise DataError(f"class '{CLASS_NAMES[label]}' has {len(idx)} readable image(s): "
                            "need at least 2 to carve a validation split")
        n_val = min(len(idx) - 1, max(1, round(len(idx) * fraction)))
        val_idx.extend(rng.permutation(idx)[:n_val].tolist())
    val_set = set(val_idx)
    train = split.take((i for i in range(len(split)) if i not in val_set), "train")
    val = split.take((i for i in range(len(split)) if i in val_set), "val")
    train.skipped = list(split.skipped)
    return train, val


def digest_ids(digests: Iterable[str]) -> np.ndarray:
    """Compact content ids: the first 64 bits of each sha1, as unsigned integers (collisions are negligible)."""
    return np.array([int(d[:16], 16) for d in digests], dtype=np.uint64)


def write_holdout_split(root: str | Path, dest: str | Path, test_fraction: float = 0.2, seed: int = 42,
                        copy: bool = False) -> dict[str, dict[str, int]]:
    """Lays out ``dest/{train,test}/{real,fake}`` from a folder without splits: a stratified, seeded hold-out.

    Files are symlinked (or copied with ``copy``), never moved; ``dest`` must not exist yet.

    Returns:
        split -> class -> number of files.
    """
    layout = discover(root)
    if list(layout) != ["all"] and len(layout) != 1:
        raise DataError(f"{root} is already split ({', '.join(layout)})")
    files = next(iter(layout.values()))
    dest = Path(dest)
    if dest.exists():
        raise OutputExistsError(f"{dest} already exists; choose another --out")
    rng = np.random.default_rng(seed)
    counts: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for label, paths in files.items():
        order = rng.permutation(len(paths))
        n_test = max(1, round(len(paths) * test_fraction))
        for split, idx in (("test", order[:n_test]), ("train", order[n_test:])):
            d = tmp / split / CLASS_NAMES[label]
            d.mkdir(parents=True, exist_ok=True)
            for i in idx:
                src = Path(paths[i]).resolve()
                target = d / src.name
                if target.exists():  # same name in two sub-folders of one class
                    target = d / f"{i}_{src.name}"
                if copy:
                    shutil.copy2(src, target)
                else:
                    target.symlink_to(src)
            counts[split][CLASS_NAMES[label]] = len(idx)
    tmp.rename(dest)
    return counts
