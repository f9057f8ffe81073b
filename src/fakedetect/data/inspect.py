"""`fakedetect inspect`: what is in a data folder, before anyone trains on it."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fakedetect import CLASS_NAMES
from fakedetect.data.checks import check_images
from fakedetect.data.layout import discover

IMBALANCE_RATIO = 1.5  # warn when one class has this many times the images of the other


@dataclass
class InspectReport:
    root: str
    counts: dict[str, dict[str, int]]
    table: pd.DataFrame
    formats: dict[str, dict[str, int]]
    sizes: dict[str, dict]
    unreadable: list[dict]
    duplicates: dict
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "root": self.root,
            "counts": self.counts,
            "table": self.table.to_dict(orient="records"),
            "formats": self.formats,
            "sizes": self.sizes,
            "unreadable": self.unreadable,
            "duplicates": self.duplicates,
            "warnings": self.warnings,
        }


def inspect_data(root: str | Path) -> InspectReport:
    """Counts, formats, sizes, unreadable files and byte-identical duplicates of a data folder."""
    layout = discover(root)
    entries = [(split, CLASS_NAMES[label], p) for split, classes in layout.items()
               for label, paths in sorted(classes.items()) for p in paths]
    infos = check_images([p for _, _, p in entries], hash_bytes=True, what="files")
    counts: dict[str, dict[str, int]] = {s: dict.fromkeys(CLASS_NAMES, 0) for s in layout}
    formats: dict[str, Counter] = defaultdict(Counter)
    dims: dict[str, list[tuple[int, int]]] = defaultdict(list)
    unreadable = []
    by_hash: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for (split, cls, path), info in zip(entries, infos, strict=True):
        if info.error:
            unreadable.append({"path": str(path), "split": split, "class": cls, "reason": info.error})
            continue
        counts[split][cls] += 1
        formats[cls][info.format] += 1
        dims[cls].append((info.width, info.height))
        by_hash[info.sha1].append((split, cls, str(path)))
    duplicates = _duplicates(by_hash)
    warnings = _warnings(counts, formats, duplicates, unreadable)
    return InspectReport(str(Path(root)), counts, _table(counts), {c: dict(f) for c, f in formats.items()},
                         _sizes(dims), unreadable, duplicates, warnings)


def _table(counts: dict[str, dict[str, int]]) -> pd.DataFrame:
    rows = []
    for split, cs in counts.items():
        total = sum(cs.values())
        for cls, n in cs.items():
            rows.append({"split": split, "class": cls, "images": n,
                         "percent": round(100 * n / total, 2) if total else 0.0})
    return pd.DataFrame(rows)


def _sizes(dims: dict[str, list[tuple[int, int]]]) -> dict:
    sizes = {}
    for cls, wh in dims.items():
        df = pd.DataFrame(wh, columns=["width", "height"])
        common = Counter(f"{w}x{h}" for w, h in wh).most_common(3)
        sizes[cls] = {"min": f"{df.width.min()}x{df.height.min()}", "max": f"{df.width.max()}x{df.height.max()}",
                      "median": f"{int(df.width.median())}x{int(df.height.median())}",
                      "most_common": dict(common)}
    return sizes


def _duplicates(by_hash: dict[str, list[tuple[str, str, str]]]) -> dict:
    groups = [g for g in by_hash.values() if len(g) > 1]
    cross_split = [g for g in groups if len({s for s, _, _ in g}) > 1]
    cross_class = [g for g in groups if len({c for _, c, _ in g}) > 1]
    return {
        "groups": len(groups),
        "redundant_files": sum(len(g) - 1 for g in groups),
        "across_splits": len(cross_split),
        "across_classes": len(cross_class),
        "examples": [[p for _, _, p in g] for g in (cross_split + cross_class + groups)[:10]],
    }


def _warnings(counts: dict, formats: dict, duplicates: dict, unreadable: list) -> list[str]:
    warnings = []
    for split, cs in counts.items():
        lo, hi = min(cs.values()), max(cs.values())
        if lo == 0:
            warnings.append(f"split '{split}' has no readable image of one class")
        elif hi / lo >= IMBALANCE_RATIO:
            warnings.append(f"split '{split}' is imbalanced ({cs}): accuracy will mislead, read balanced "
                            "accuracy and ROC AUC; training uses class weights")
    if duplicates["across_splits"]:
        warnings.append(f"{duplicates['across_splits']} image(s) appear byte-identical in more than one split: "
                        "validation/test scores will be optimistic")
    if duplicates["across_classes"]:
        warnings.append(f"{duplicates['across_classes']} image(s) appear byte-identical in both classes: "
                        "labels conflict")
    fmt_sets = {cls: set(f) for cls, f in formats.items()}
    if len(fmt_sets) == 2 and fmt_sets["real"].isdisjoint(fmt_sets["fake"]):
        warnings.append(f"the classes have different file formats (real: {sorted(fmt_sets['real'])}, fake: "
                        f"{sorted(fmt_sets['fake'])}): a model can learn the format instead of real vs fake; "
                        "train with JPEG re-encoding augmentation (augment.jpeg_prob)")
    if unreadable:
        warnings.append(f"{len(unreadable)} unreadable file(s) will be skipped")
    return warnings
