"""Issue 12's figures: the cross-dataset table of a CIFAKE-only, a faces-only (robust) and a mixed run on held-out
parts of every shared set, the domain check's flag rates and AUROC, and the faces run under re-encoding.

Every shared set is split once (stratified, seed 0: CIFAKE 10% held out, faces and sd-coco 20%); the runs train on
the training parts only (their validation carved out of them) and are scored on the held-out parts:

- cifake: `configs/demo.yaml` on CIFAKE's training part, 5,000 images per class (the demo's model);
- faces: `configs/faces-robust.yaml` on the faces' training part;
- mixed: `configs/general.yaml` with its sources replaced by the three training parts (same weights and caps).

    python benchmarks/cross_dataset.py [--work DIR] [--max-per-class 500] [--only cifake,faces,mixed]

A run folder that already holds a finished run is reused (delete it to train again).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np
from common import HERE, machine, table

SHARED = HERE.parent.parent / "shared" / "data"
SETS = {"cifake": ("cifake-train.tar.gz", 0.1), "faces": ("faces-main.tar.gz", 0.2), "sd-coco": ("sd-coco.tar.gz", 0.2)}


def holdouts(work: Path) -> dict[str, Path]:
    from fakedetect.data.archive import resolve_data
    from fakedetect.data.splits import write_holdout_split

    out = {}
    for name, (archive, fraction) in SETS.items():
        dest = work / "data" / name
        if not dest.exists():
            print(name, write_holdout_split(resolve_data(SHARED / archive), dest, fraction, seed=0), file=sys.stderr)
        out[name] = dest
    return out


def train_runs(work: Path, data: dict[str, Path], only: list[str]) -> dict[str, Path]:
    from fakedetect.config import load_config
    from fakedetect.runfolder import MODEL_FILE
    from fakedetect.training import train

    general = load_config("general")
    mixed = [{**src, "path": str(data[name])} for src, name in zip(general.data, SETS, strict=True)]
    recipes = {"cifake": ("demo", data["cifake"], {"max_per_class": 5000}),
               "faces": ("faces-robust", data["faces"], {}),
               "mixed": ("general", mixed, {})}
    runs = {}
    for name in only:
        preset, source, extra = recipes[name]
        out = work / "runs" / name
        if not (out / MODEL_FILE).is_file():
            t = time.perf_counter()
            train(source, load_config(preset, extra), out, overwrite=out.exists())
            print(f"{name}: trained in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        runs[name] = out
    return runs


def domain_auroc(cells, run: str, own: str) -> dict[str, float]:
    """AUROC of the domain distance: the run's own held-out set (in domain) against each other set."""
    from sklearn.metrics import roc_auc_score

    by = {c.data: c for c in cells if c.run == run}
    inside = by[own].distance
    out = {}
    for name, c in by.items():
        if name != own and c.distance is not None and len(c.distance) and len(inside):
            scores = np.r_[inside, c.distance]
            out[name] = float(roc_auc_score(np.r_[np.zeros(len(inside)), np.ones(len(c.distance))], scores))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=HERE.parent / "runs" / "issue12")
    ap.add_argument("--max-per-class", type=int, default=500, help="test images per class of each set")
    ap.add_argument("--only", default="cifake,faces,mixed")
    args = ap.parse_args()

    from fakedetect.evaluation.cross import cross_scores, long_table, markdown, write_cross

    data = holdouts(args.work)
    runs = train_runs(args.work, data, args.only.split(","))
    cells, sources, _ = cross_scores(list(runs.values()), list(data.values()), 64, args.max_per_class)
    write_cross(args.work / "compare", cells, sources, overwrite=True)
    print(f"\ncross-dataset, {dt.date.today()}, {machine()}; held-out parts, at most {args.max_per_class} images "
          f"per class each\n")
    print(markdown(long_table(cells, sources)))
    own = {"cifake": "cifake", "faces": "faces"}
    rows = []
    for run, home in own.items():
        if run in runs:
            for other, auroc in domain_auroc(cells, run, home).items():
                flagged = {c.data: c.out_of_domain for c in cells if c.run == run}
                rows.append({"run": run, "in-domain set (held out)": home, "flagged there": flagged[home],
                             "other set": other, "flagged": flagged[other], "distance AUROC": auroc})
    if rows:
        print("\ndomain check: share flagged out of domain, and AUROC of the distance (own set vs other)\n")
        print(table(rows, ["run", "in-domain set (held out)", "flagged there", "other set", "flagged",
                           "distance AUROC"]))
    if "faces" in runs:
        from fakedetect.evaluation.robustness import robustness

        rob = robustness(runs["faces"], data["faces"], args.work / "robustness-faces", overwrite=True,
                         only=["reencode_both_jpeg90", "jpeg_q75", "jpeg_q50"])
        print("\nfaces run on the faces' held-out part (all 800 images), both classes perturbed alike\n")
        print(table(rob.table[["perturbation", "roc_auc", "accuracy"]].to_dict(orient="records"),
                    ["perturbation", "roc_auc", "accuracy"]))
    print(f"\nfull table, heatmap and report: {args.work / 'compare'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
