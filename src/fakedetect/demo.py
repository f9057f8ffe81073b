"""`fakedetect demo`: find data, inspect it, train the CPU recipe, and say where everything is."""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from fakedetect.config import DEMO_PER_CLASS, load_config
from fakedetect.data.archive import folder_fingerprint, resolve_data, set_name
from fakedetect.data.download import download
from fakedetect.data.inspect import inspect_data
from fakedetect.data.layout import discover
from fakedetect.data.splits import write_holdout_split
from fakedetect.data.synthetic import make_synthetic_dataset
from fakedetect.errors import DataError
from fakedetect.evaluation.evaluate import evaluate, summary_table
from fakedetect.paths import cache_dir
from fakedetect.runfolder import CURVES_FILE, MODEL_FILE, REPORT_FILE
from fakedetect.training import train

log = logging.getLogger(__name__)

# Where the project's developers and CI find CIFAKE's training archive (relative to the working folder).
DEFAULT_ARCHIVES = ("../shared/data/cifake-train.tar.gz", "shared/data/cifake-train.tar.gz")


@dataclass
class DemoData:
    path: Path
    source: str  # "given", "cifake-archive" or "synthetic"
    synthetic: bool


def find_demo_data(data: str | Path | None = None) -> DemoData:
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
        try:
            return DemoData(download("cifake"), "cifake-download", False)
        except DataError as e:
            log.info(f"no CIFAKE download: {e}")

    root = cache_dir() / "datasets" / "synthetic-demo"
    if not (root / "README.txt").exists():
        log.info(f"no data given and no CIFAKE archive found ({', '.join(candidates)}): generating a SYNTHETIC set")
        make_synthetic_dataset(root, n_per_class=300, size=64)
    return DemoData(root, "synthetic", True)


def holdout_root(root: Path, test_fraction: float = 0.1, seed: int = 42) -> Path:
    """A folder with train/ and test/ splits for ``root``: itself if it has a test/ split, else a cached
    stratified hold-out made of symlinks (the test images are never trained on)."""
    layout = discover(root)
    if "test" in layout:
        return root
    # Keyed on the folder's resolved path and its files: a different folder of the same name gets its own split.
    files = [p for classes in layout.values() for paths in classes.values() for p in paths]
    key = folder_fingerprint(root, files)
    dest = cache_dir() / "datasets" / f"{root.name}-holdout{round(test_fraction * 100)}-seed{seed}-{key}"
    if dest.exists():
        log.info(f"reusing the hold-out split of {root.resolve()} made earlier: {dest}")
    else:
        log.info(f"holding out {test_fraction:.0%} of {root.resolve()} as a test split (symlinks in {dest})")
        write_holdout_split(root, dest, test_fraction, seed)
    return dest


@dataclass
class DemoResult:
    run_dir: Path
    eval_dir: Path
    metrics: dict
    synthetic: bool


def run_demo(data: str | Path | None = None, out: str | Path | None = None,
             max_per_class: int = DEMO_PER_CLASS) -> DemoResult:
    """The main job end to end: find data, inspect it, hold out a test split, train the demo recipe on it,
    evaluate on the held-out images, and say where everything is."""
    found = find_demo_data(data)
    note = "  (SYNTHETIC data: says nothing about real detectors)" if found.synthetic else ""
    log.info(f"== 1/4 data: {'SYNTHETIC (generated, not real images)' if found.synthetic else found.path}")
    root = resolve_data(found.path)
    report = inspect_data(root)
    log.info(report.table.to_string(index=False))
    for w in report.warnings:
        log.warning(f"warning: {w}")
    split_root = holdout_root(root)
    out = out or Path("runs") / f"demo-{dt.datetime.now():%Y%m%d-%H%M%S}{'-synthetic' if found.synthetic else ''}"
    cfg = load_config("demo", {"max_per_class": max_per_class})
    log.info(f"== 2/4 training {cfg.backbone} ({cfg.weights} weights) on at most {max_per_class} images per class")
    # Named after the data given, not the cached hold-out folder the images are read from (the web page's
    # "Trained on" line).
    result = train([{"path": str(split_root), "name": set_name(found.path)}], cfg, out)
    log.info("== 3/4 evaluating on the held-out test split (never trained on)")
    ev = evaluate(result.run_dir, split_root, result.run_dir / "eval-test")
    log.info(summary_table(ev.metrics).to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="undefined"))
    log.info("\n== summary" + note)
    log.info(f"run folder:       {result.run_dir}")
    log.info(f"model:            {result.run_dir / MODEL_FILE}")
    log.info(f"training curves:  {result.run_dir / CURVES_FILE}")
    log.info(f"test report:      {ev.out_dir / REPORT_FILE}")
    auc = ev.metrics["roc_auc"]
    log.info(f"test:             accuracy {ev.metrics['accuracy']:.4f}, AUC "
        f"{'undefined' if auc is None else f'{auc:.4f}'} on {ev.metrics['n']} held-out images" + note)
    return DemoResult(result.run_dir, ev.out_dir, ev.metrics, found.synthetic)
