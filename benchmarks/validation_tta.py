"""A run's validation figures, re-measured, with and without flip test-time augmentation (issue 13).

Rebuilds the run's own validation carve (its config and data: same files, same seed; never a test set), scores
it with the run as `predict` and `evaluate` do, then again with `--tta` (the image and its mirror image), and
prints accuracy at 0.5 and at the run's threshold, ROC AUC, ECE (with the run's temperature) and images/s.

    python benchmarks/validation_tta.py RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np
from common import machine, table


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    from fakedetect.config import load_config
    from fakedetect.metrics import binary_metrics, ece
    from fakedetect.run import load_run, score_files
    from fakedetect.training.inputs import prepare_data

    rows = []
    for path in args.runs:
        run = load_run(path)
        cfg = load_config(path / "config.yaml")
        _, val, _ = prepare_data(run.card.data["data_root"], cfg)
        y = np.asarray(val.labels)
        for tta in (False, True):
            t0 = time.perf_counter()
            raw, _ = score_files(run.model, val.paths, run.image_size, args.batch_size, val.pillow_only, tta=tta)
            seconds = time.perf_counter() - t0
            ok = ~np.isnan(raw)
            p = run.calibrate(raw[ok])
            at_half, at_t = binary_metrics(y[ok], p, 0.5), binary_metrics(y[ok], p, run.threshold)
            rows.append({"run": path.name, "scoring": "image + mirror (TTA)" if tta else "image",
                         "accuracy at 0.5": f"{at_half['accuracy']:.2%}",
                         "accuracy at run threshold": f"{at_t['accuracy']:.2%}",
                         "ROC AUC": f"{at_half['roc_auc']:.5f}", "ECE": f"{ece(y[ok], p):.4f}",
                         "images/s": f"{len(raw) / seconds:.1f}",
                         "images": int(ok.sum())})
    print(f"{dt.date.today()} {machine()}\n")
    print(table(rows, ["run", "scoring", "images", "accuracy at 0.5", "accuracy at run threshold", "ROC AUC", "ECE",
                       "images/s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
