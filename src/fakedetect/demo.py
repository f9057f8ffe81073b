"""`fakedetect demo`: find data, inspect it, train the CPU recipe, and say where everything is."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fakedetect.backbones import cache_dir

# Where the project's developers and CI find CIFAKE's training archive (relative to the working folder).
DEFAULT_ARCHIVES = ("../shared/data/cifake-train.tar.gz", "shared/data/cifake-train.tar.gz")


@dataclass
class DemoData:
    path: Path
    source: str  # "given", "cifake-archive" or "synthetic"
    synthetic: bool


def find_demo_data(data: str | Path | None = None, log=print) -> DemoData:
    """Picks the demo's data: ``data`` / $FAKEDETECT_DATA, a local CIFAKE archive, else a generated set."""
    given = data or os.environ.get("FAKEDETECT_DATA")
    if given:
        return DemoData(Path(given), "given", False)
    archive = os.environ.get("FAKEDETECT_CIFAKE_ARCHIVE")
    candidates = [archive] if archive else list(DEFAULT_ARCHIVES)
    for c in candidates:
        if c and Path(c).is_file():
            return DemoData(Path(c), "cifake-archive", False)
    from fakedetect.synthetic import make_synthetic_dataset

    root = cache_dir() / "datasets" / "synthetic-demo"
    if not (root / "README.txt").exists():
        log(f"no data given and no CIFAKE archive found ({', '.join(candidates)}): generating a SYNTHETIC set")
        make_synthetic_dataset(root, n_per_class=300, size=64)
    return DemoData(root, "synthetic", True)
