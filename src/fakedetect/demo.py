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
    if os.environ.get("FAKEDETECT_DEMO_DOWNLOAD", "1") != "0":
        from fakedetect.data import DataError
        from fakedetect.datasets import download

        try:
            return DemoData(download("cifake"), "cifake-download", False)
        except DataError as e:
            log(f"no CIFAKE download: {e}")
    from fakedetect.synthetic import make_synthetic_dataset

    root = cache_dir() / "datasets" / "synthetic-demo"
    if not (root / "README.txt").exists():
        log(f"no data given and no CIFAKE archive found ({', '.join(candidates)}): generating a SYNTHETIC set")
        make_synthetic_dataset(root, n_per_class=300, size=64)
    return DemoData(root, "synthetic", True)


def holdout_root(root: Path, log=print, test_fraction: float = 0.1, seed: int = 42) -> Path:
    """A folder with train/ and test/ splits for ``root``: itself if it has a test/ split, else a cached
    stratified hold-out made of symlinks (the test images are never trained on)."""
    from fakedetect.data import discover, write_holdout_split

    layout = discover(root)
    if "test" in layout:
        return root
    dest = cache_dir() / "datasets" / f"{root.name}-holdout{int(test_fraction * 100)}-seed{seed}"
    if not dest.exists():
        log(f"holding out {test_fraction:.0%} of the images as a test split (symlinks in {dest})")
        write_holdout_split(root, dest, test_fraction, seed)
    return dest
