"""Issue 23's cost figure: `predict` images/s of a crop-mode run against a resize-mode run, on the same files.

    python benchmarks/crop_cost.py RESIZE_RUN CROP_RUN FOLDER [FOLDER ...] [--per-class 300]

Both runs score every image of the folders' test parts (at most --per-class per class each) through the one
scoring call (decode, frame, model, domain check), best of 2 passes after a warm-up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from common import machine, table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs=2, type=Path)
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--per-class", type=int, default=300)
    args = ap.parse_args()

    from fakedetect.evaluation.evaluate import load_test_split
    from fakedetect.run import load_run

    splits = [load_test_split(f, max_per_class=args.per_class) for f in args.folders]
    paths = [p for s in splits for p in s.paths]
    flags = [f for s in splits for f in s.pillow_only]
    rows = []
    for run_dir in args.runs:
        run = load_run(run_dir)
        run.score(paths=paths[:64], pillow_only=flags[:64])  # warm-up: traces the scoring function
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            run.score(paths=paths, pillow_only=flags)
            best = min(best, time.perf_counter() - t)
        rows.append({"run": run_dir.name, "input": run.framing.describe(), "forward passes / image":
                     run.framing.views, "images": len(paths), "images/s": len(paths) / best})
    print(f"\ncrop mode against resize mode, {dt.date.today()}, {machine()}\n")
    print(table(rows, ["run", "input", "forward passes / image", "images", "images/s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
