"""Issue 23 point 4: does the domain check flag a source the model never saw? The backbone's depths against the
trace space (:mod:`fakedetect.trace`), on the leave-one-source-out runs of ``leave_one_out.py``.

For each run (a recipe trained on two shared sets, the third left out), the densities are fitted on a sample of
the two trained sets' training parts (groups: source and class), as training fits them, and measured on the
held-out parts of all three sets: the share of the left-out set flagged when at most 5% of the trained sets'
held-out images are (the threshold is their 95th percentile: a measurement of separation, not a shipped
threshold), the AUROC of the distance (left-out against trained held-out), and the shares flagged at the product's
own threshold (99th percentile of a validation sample drawn from the training parts, disjoint from the fit).

Two conditions: images as they are, and **equalised**: every image (fit, validation and test alike) resized to one
size and re-encoded at one JPEG quality, so that resolution and format alone cannot do the flagging.

Signals: ``deep`` (the backbone's depths: what runs shipped before), ``trace`` (the trace features alone),
``deep + trace`` (the trace features as one more depth of the same mean: what training now fits).

    python benchmarks/trace_domain.py [--work runs/issue23] [--runs general-faces,...]
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

SIGNALS = ("deep", "trace", "deep + trace")


def equalise(size: int, quality: int):
    """Every image resized to size x size, then JPEG of ``quality`` (uint8 in, uint8 out)."""
    import tensorflow as tf

    def f(img):
        x = tf.image.resize(tf.cast(img, tf.float32), (size, size), antialias=True)
        x = tf.cast(tf.round(tf.clip_by_value(x, 0, 255)), tf.uint8)
        return tf.ensure_shape(tf.image.adjust_jpeg_quality(x, quality), [size, size, 3])

    return f


def features(run, split, perturb) -> list[np.ndarray]:
    """The scoring function's features (trace first, then the backbone's depths) of a split's decoded images."""
    from fakedetect.data.pipeline import build_dataset
    from fakedetect.run import scoring_function

    fn = scoring_function(run.model, False, run.framing)
    ds = build_dataset(split.paths, None, run.framing, 32, pillow_only=split.pillow_only, perturb=perturb)
    out = []
    for _, batch in ds:
        _, feats, _ = fn(batch)
        out.append([np.asarray(f, np.float64) for f in feats])
    return [np.concatenate(f) for f in zip(*out, strict=True)]


def measure(run_dir: Path, fold: str, data: dict[str, Path], args, condition: str) -> dict:
    from fakedetect.data.splits import Split
    from fakedetect.domain import fit_domain
    from fakedetect.evaluation.evaluate import load_test_split
    from fakedetect.run import load_run

    run = load_run(run_dir)
    perturb = equalise(args.size, args.quality) if condition == "equalised" else None
    trained = [n for n in SETS if n != fold]
    fit, val, groups = [], [], []
    for s, name in enumerate(trained):
        part: Split = load_test_split(data[name] / "train", max_per_class=args.fit_per_class + args.val_per_class)
        order = np.random.default_rng(1).permutation(len(part))
        y = np.asarray(part.labels)
        f_idx = np.concatenate([order[y[order] == c][:args.fit_per_class] for c in (0, 1)])
        v_idx = np.setdiff1d(order, f_idx)
        fit.append(features(run, part.take(np.sort(f_idx)), perturb))
        val.append(features(run, part.take(np.sort(v_idx)), perturb))
        groups.append(y[np.sort(f_idx)] + 2 * s)
    fit_f = [np.concatenate(d) for d in zip(*fit, strict=True)]
    val_f = [np.concatenate(d) for d in zip(*val, strict=True)]
    test = {name: features(run, load_test_split(data[name] / "test", max_per_class=args.test_per_class), perturb)
            for name in SETS}
    pick = {"deep": slice(1, None), "trace": slice(0, 1), "deep + trace": slice(0, None)}
    out = {"condition": condition, "fold": fold, "n_fit": int(len(fit_f[0])), "n_val": int(len(val_f[0])),
           "n_test": {k: int(len(v[0])) for k, v in test.items()}}
    from sklearn.metrics import roc_auc_score

    for signal, sl in pick.items():
        model = fit_domain(fit_f[sl], np.concatenate(groups), val_f[sl])
        d = {name: model.distance(f[sl]) for name, f in test.items()}
        held = np.concatenate([d[n] for n in trained])
        t5 = float(np.quantile(held, 0.95))
        y = np.r_[np.zeros(len(held)), np.ones(len(d[fold]))]
        out[signal] = {"flagged_at_5pct": float((d[fold] > t5).mean()),
                       "auroc": float(roc_auc_score(y, np.r_[held, d[fold]])),
                       "left_out_flagged_product": float((~model.in_domain(d[fold])).mean()),
                       "held_out_flagged_product": float((~model.in_domain(held)).mean())}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=HERE.parent / "runs" / "issue23")
    ap.add_argument("--runs", default="general-faces,general-sd-coco,general-cifake,lite0-crop-faces")
    ap.add_argument("--fit-per-class", type=int, default=300, help="per trained source and class")
    ap.add_argument("--val-per-class", type=int, default=100, help="per trained source and class")
    ap.add_argument("--test-per-class", type=int, default=300)
    ap.add_argument("--size", type=int, default=128, help="equalised: the one size")
    ap.add_argument("--quality", type=int, default=90, help="equalised: the one JPEG quality")
    args = ap.parse_args()

    from fakedetect.atomic import write_json

    data = holdouts(HERE.parent / "runs" / "issue12")
    (args.work / "trace").mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.runs.split(","):
        fold = next(f for f in SETS if name.endswith("-" + f))
        for condition in ("as is", "equalised"):
            path = args.work / "trace" / f"{name}-{condition.replace(' ', '')}.json"
            if not path.is_file():
                t = time.perf_counter()
                res = measure(args.work / "runs" / name, fold, data, args, condition)
                res["seconds"] = time.perf_counter() - t
                res["budget"] = vars(args) | {"work": str(args.work)}
                write_json(path, res)
            res = json.loads(path.read_text())
            for signal in SIGNALS:
                r = res[signal]
                rows.append({"run": name, "left out": fold, "images": condition, "signal": signal,
                             "left-out flagged at 5% held-out": r["flagged_at_5pct"], "AUROC": r["auroc"],
                             "product threshold: left-out flagged": r["left_out_flagged_product"],
                             "held-out flagged": r["held_out_flagged_product"]})
    print(f"\ndomain check on left-out sources, {dt.date.today()}, {machine()}; fit {args.fit_per_class}/class/source, "
          f"validation {args.val_per_class}/class/source, test {args.test_per_class}/class; equalised = "
          f"{args.size} px, JPEG {args.quality}\n")
    print(table(rows, list(rows[0])))
    for cond in ("as is", "equalised"):
        for signal in SIGNALS:
            v = [r["left-out flagged at 5% held-out"] for r in rows if r["images"] == cond and r["signal"] == signal]
            print(f"mean over runs, {cond}, {signal}: {np.mean(v):.3f} of left-out flagged at 5% held-out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
