"""Issue 23's table: what each recipe is worth on a source it never saw (leave one source out).

Every shared set is split once as `cross_dataset.py` splits it (stratified, seed 0: CIFAKE 10% held out, faces and
sd-coco 20%). For each set L (a fold), a recipe trains on the training parts of the two others and is scored on:

- L's held-out part (the left-out source: never seen, not even its training part);
- the held-out parts of the two sets it trained on;
- robustness columns, both classes changed alike: faces re-encoded as JPEG 75 (the faces' format trap: real
  PNG, fake JPEG 75), sd-coco shrunk to half and back (resampling) and sd-coco re-encoded as JPEG 75 (a cell
  made before a column was added gets it on the next run, from its saved run).

Cells: ROC AUC with a bootstrap 95% interval (1,000 resamples of the images), accuracy at the run's threshold,
share flagged out of domain; crop recipes also give the left-out AUC under the other combine rule (max/mean).
Note the folds: CIFAKE and sd-coco are both Stable Diffusion 1.x (32 px vs 512 px); faces is StyleGAN2: only the
faces fold is a new generator family.

Budget: each training source is capped at --max-per-class images per class (800 by default: a cell trains in about
5-15 minutes on 2 cores), the recipes' own epochs; test parts at most --test-per-class per class. Resumable cell
by cell: a cell's figures are kept in WORK/cells/RECIPE-FOLD.json and its run in WORK/runs/RECIPE-FOLD (delete
either to redo it).

    python benchmarks/leave_one_out.py [--work DIR] [--recipes general,lite0-crop,npr-crop,npr] [--folds faces,...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np
from common import HERE, machine, table
from cross_dataset import SETS, holdouts

# Recipe name -> overrides of configs/general.yaml (its augmentations, schedule and epochs; its sources replaced).
RECIPES = {
    "general": {},  # today's: Lite0, every image resized to 128 px
    "lite0-crop": {"input": "crop", "image_size": 96},
    "npr": {"backbone": "npr", "image_size": 96},
    "npr-crop": {"backbone": "npr", "input": "crop", "image_size": 96},
    "npr-lite0-crop": {"backbone": "npr-lite0", "input": "crop", "image_size": 96},
    "lite2-crop": {"backbone": "efficientnet-lite2", "input": "crop", "image_size": 96},
    # the frozen ImageNet features and a trained head only (UnivFD's bet with the features there are here: a
    # backbone that is not fine-tuned cannot learn the training sets' quirks in its own layers)
    "lite0-frozen": {"epochs_frozen": 7, "epochs_finetune": 0},
}
ROBUST = {"faces re-encoded JPEG 75": ("faces", "jpeg", 75), "sd-coco resampled 0.5": ("sd-coco", "downscale", 0.5),
          "sd-coco re-encoded JPEG 75": ("sd-coco", "jpeg", 75)}


def bootstrap_auc(y: np.ndarray, p: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """ROC AUC and its bootstrap 95% interval (resampling images, both classes kept in every draw)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    aucs = []
    for _ in range(n):
        idx = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        aucs.append(roc_auc_score(y[idx], p[idx]))
    return float(roc_auc_score(y, p)), float(np.percentile(aucs, 2.5)), float(np.percentile(aucs, 97.5))


def train_cell(work: Path, recipe: str, fold: str, data: dict[str, Path], max_per_class: int) -> Path:
    from fakedetect.config import load_config
    from fakedetect.runfolder import MODEL_FILE
    from fakedetect.training import train

    out = work / "runs" / f"{recipe}-{fold}"
    if (out / MODEL_FILE).is_file():
        return out
    general = load_config("general")
    sources = [{**src, "path": str(data[name] / "train"), "name": name,
                "max_per_class": min(max_per_class, src.get("max_per_class") or max_per_class)}
               for src, name in zip(general.data, SETS, strict=True) if name != fold]
    cfg = load_config("general", RECIPES[recipe])
    t = time.perf_counter()
    train(sources, cfg, out, overwrite=out.exists())
    print(f"{recipe}-{fold}: trained in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return out


def score_cell(run_dir: Path, fold: str, data: dict[str, Path], per_class: int, only: list[str] | None = None,
               cell: dict | None = None) -> dict:
    from fakedetect.data.transforms import downscale, jpeg_reencode
    from fakedetect.evaluation.evaluate import load_test_split, score
    from fakedetect.framing import Framing
    from fakedetect.metrics import binary_metrics
    from fakedetect.run import load_run, score_files

    run = load_run(run_dir)
    cell = cell if cell is not None else {"seconds_scoring": 0.0}
    t0 = time.perf_counter()
    make = {"jpeg": jpeg_reencode, "downscale": downscale}
    columns = {name: (name, None) for name in SETS}
    columns.update({col: (name, make[kind](v)) for col, (name, kind, v) in ROBUST.items()})
    for col, (name, perturb) in columns.items():
        if only is not None and col not in only:
            continue
        split = load_test_split(data[name] / "test", max_per_class=per_class)
        s = score(run, split, perturb=perturb)
        y = np.asarray(s.split.labels)
        auc, lo, hi = bootstrap_auc(y, s.prob)
        m = binary_metrics(y, s.prob, run.threshold)
        flagged = float((~run.domain.in_domain(s.distance)).mean()) if s.distance is not None else None
        cell[col] = {"n": int(len(y)), "auc": auc, "auc_lo": lo, "auc_hi": hi, "accuracy": m["accuracy"],
                     "flagged": flagged, "left_out": name == fold}
        if name == fold and perturb is None and run.framing.cropped:  # the other combine rule, same model
            other = "max" if run.framing.combine == "mean" else "mean"
            fr = Framing(run.framing.size, "crop", run.framing.crops, other)
            raw, _ = score_files(run.model, s.split.paths, fr, 64, s.split.pillow_only)
            cell[col][f"auc_{other}"] = bootstrap_auc(y, raw)[0]
    cell["seconds_scoring"] = cell.get("seconds_scoring", 0.0) + time.perf_counter() - t0
    cell["train_seconds"] = run.card.train_seconds
    cell["framing"] = run.framing.describe()
    return cell


def summary_rows(cells: dict[tuple[str, str], dict], recipes: list[str]) -> list[dict]:
    """One row per recipe: the left-out AUC of each set (the fold leaving it out), their mean, the mean AUC on
    the trained sets' held-out parts, and the robustness columns (mean over folds where that set was trained)."""
    rows = []
    for r in recipes:
        mine = {f: c for (rr, f), c in cells.items() if rr == r}
        if not mine:
            continue
        row = {"recipe": r}
        left = []
        for name in SETS:
            c = mine.get(name, {}).get(name)
            if c:
                row[f"{name} (left out)"] = f"{c['auc']:.3f} [{c['auc_lo']:.3f}, {c['auc_hi']:.3f}]"
                left.append(c["auc"])
        row["mean left-out AUC"] = float(np.mean(left)) if left else ""
        trained = [c[name]["auc"] for f, c in mine.items() for name in SETS if name != f and name in c]
        row["mean trained held-out AUC"] = float(np.mean(trained)) if trained else ""
        for col, (name, _, _) in ROBUST.items():
            v = [c[col]["auc"] for f, c in mine.items() if f != name and col in c]
            row[col] = float(np.mean(v)) if v else ""
        fl = [c[f]["flagged"] for f, c in mine.items() if f in c and c[f]["flagged"] is not None]
        row["left-out flagged"] = float(np.mean(fl)) if fl else ""
        row["folds"] = len(mine)
        rows.append(row)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=HERE.parent / "runs" / "issue23")
    ap.add_argument("--recipes", default="general,lite0-crop,npr-crop,npr")
    ap.add_argument("--folds", default="faces,sd-coco,cifake")
    ap.add_argument("--max-per-class", type=int, default=800, help="training images per class of each source")
    ap.add_argument("--test-per-class", type=int, default=400, help="test images per class of each held-out part")
    ap.add_argument("--report-only", action="store_true", help="print the table of the cells done so far")
    args = ap.parse_args()

    from fakedetect.atomic import write_json

    data = holdouts(HERE.parent / "runs" / "issue12")  # the same held-out parts as cross_dataset.py
    recipes, folds = args.recipes.split(","), args.folds.split(",")
    cells: dict[tuple[str, str], dict] = {}
    (args.work / "cells").mkdir(parents=True, exist_ok=True)
    for fold in folds:
        for recipe in recipes:
            path = args.work / "cells" / f"{recipe}-{fold}.json"
            if not path.is_file() and not args.report_only:
                t = time.perf_counter()
                run = train_cell(args.work, recipe, fold, data, args.max_per_class)
                cell = score_cell(run, fold, data, args.test_per_class)
                cell["cell_seconds"] = time.perf_counter() - t
                cell["budget"] = {"max_per_class": args.max_per_class, "test_per_class": args.test_per_class}
                write_json(path, cell)
            if path.is_file():
                cell = json.loads(path.read_text())
                missing = [col for col in ROBUST if col not in cell]
                run = args.work / "runs" / f"{recipe}-{fold}"
                if missing and not args.report_only and run.is_dir():
                    per_class = cell.get("budget", {}).get("test_per_class", args.test_per_class)
                    cell = score_cell(run, fold, data, per_class, only=missing, cell=cell)
                    write_json(path, cell)
                cells[(recipe, fold)] = cell
    budgets = sorted({json.dumps(c.get("budget", "not recorded")) for c in cells.values()})
    print(f"\nleave one source out, {dt.date.today()}, {machine()}; the cells' budgets (training images per class "
          f"of each source, test images per class of each held-out part): {', '.join(budgets)}\n")
    cols = ["recipe", *[f"{n} (left out)" for n in SETS], "mean left-out AUC", "mean trained held-out AUC",
            *ROBUST, "left-out flagged", "folds"]
    print(table(summary_rows(cells, recipes), cols))
    long = []
    for (recipe, fold), c in sorted(cells.items()):
        for col in [*SETS, *ROBUST]:
            if col in c:
                v = c[col]
                long.append({"recipe": recipe, "left out": fold, "test set": col, "n": v["n"],
                             "AUC [95% CI]": f"{v['auc']:.3f} [{v['auc_lo']:.3f}, {v['auc_hi']:.3f}]",
                             "other rule AUC": v.get("auc_max", v.get("auc_mean", "")),
                             "accuracy": v["accuracy"], "flagged": v["flagged"] if v["flagged"] is not None else "",
                             "train s": round(c.get("train_seconds") or 0)})
    print("\nevery cell\n")
    print(table(long, ["recipe", "left out", "test set", "n", "AUC [95% CI]", "other rule AUC", "accuracy",
                       "flagged", "train s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
