"""How a run fares on data sets other than its own, and whether its domain check says so.

For each data set: images scored, the share flagged out of domain (unlike the training images), accuracy and
ROC AUC on all images and on the in-domain ones. A run trained before the (multi-depth) domain model gets one
first, as training fits it (:func:`fakedetect.training.finish.refit_domain`).

    python benchmarks/domain_shift.py RUN DATA [DATA ...] [--max-per-class 500]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
from common import machine, table


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("data", type=Path, nargs="+")
    ap.add_argument("--max-per-class", type=int, default=500)
    ap.add_argument("--refit", action="store_true", help="fit the run's domain model again first")
    args = ap.parse_args()

    from fakedetect.data.layout import choose_split, discover
    from fakedetect.data.splits import subsample, to_split
    from fakedetect.metrics import binary_metrics
    from fakedetect.run import load_run, score_files
    from fakedetect.training.finish import refit_domain

    run = load_run(args.run)
    if run.domain is None or len(run.domain.depths) == 1 or args.refit:
        refit_domain(args.run)
        run = load_run(args.run)
    rows = []
    for data in args.data:
        layout = discover(data, require_both=False)
        name = choose_split(layout, "test", data) if "test" in layout or len(layout) == 1 else next(iter(layout))
        split = to_split(name, subsample(layout[name], args.max_per_class, 0), require_both=False)
        raw, dist = score_files(run.model, split.paths, run.image_size, 64, split.pillow_only, domain=run.domain)
        ok = ~np.isnan(raw)
        y, p, dist = np.asarray(split.labels)[ok], run.calibrate(raw[ok]), dist[ok]
        inside = run.domain.in_domain(dist)
        m = binary_metrics(y, p, run.threshold)
        mi = binary_metrics(y[inside], p[inside], run.threshold) if inside.any() else {}
        rows.append({"data": Path(data).name, "images": int(ok.sum()), "out of domain": float((~inside).mean()),
                     "accuracy": m["accuracy"], "AUC": m["roc_auc"] or float("nan"),
                     "accuracy in domain": mi.get("accuracy", float("nan")),
                     "real called fake": 1 - (m["specificity"] or 0.0)})
    print(f"\ndomain shift, {dt.date.today()}, {machine()}")
    print(f"run {args.run} ({run.card.backbone} at {run.image_size} px, trained on "
          f"{run.card.data['data_root']}); domain threshold {run.domain.threshold:.2f}\n")
    print(table(rows, ["data", "images", "out of domain", "accuracy", "AUC", "accuracy in domain",
                       "real called fake"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
