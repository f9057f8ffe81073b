"""The faces format trap: a naive model against one trained with JPEG/blur augmentation of both classes.

Every real face in ../shared/data/faces-main.tar.gz is a lossless PNG, every fake a JPEG of quality ~75, so a
model can score near-perfectly by detecting the format. Both models are trained on the same 80% and scored on
the same held-out 20%, clean and with both classes re-encoded as JPEG 90 (the format-bias check).

    python benchmarks/faces_format_trap.py [--archive PATH] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from fakedetect.config import load_config
from fakedetect.data.archive import resolve_data
from fakedetect.data.splits import write_holdout_split
from fakedetect.evaluation.robustness import robustness
from fakedetect.training import train

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", default=str(HERE.parent.parent / "shared" / "data" / "faces-main.tar.gz"))
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--image-size", type=int, default=128)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="faces-bench-"))
    data = work / "split"
    if not data.exists():
        print(write_holdout_split(resolve_data(args.archive), data, 0.2, seed=0))
    base = {"backbone": "efficientnet-lite0", "image_size": args.image_size, "epochs_frozen": 3,
            "epochs_finetune": 3, "batch_size": 32}
    recipes = {
        "naive": {"augment": {"jpeg_prob": 0.0, "blur_prob": 0.0}},
        "robust": {"augment": {"jpeg_prob": 0.5, "jpeg_quality": [30, 100], "blur_prob": 0.1}},
    }
    rows = []
    for name, extra in recipes.items():
        cfg = load_config("cpu", {**base, **extra})
        t = time.perf_counter()
        res = train(data, cfg, work / f"run-{name}", overwrite=True)
        rob = robustness(res.run_dir, data, work / f"rob-{name}", overwrite=True,
                         only=["reencode_both_jpeg90", "jpeg_q75", "jpeg_q50"])
        tab = rob.table.set_index("perturbation")
        rows.append({"recipe": name, "train_seconds": round(time.perf_counter() - t),
                     **{f"auc_{p}": float(tab.loc[p, "roc_auc"]) for p in tab.index},
                     **{f"acc_{p}": float(tab.loc[p, "accuracy"]) for p in tab.index}})
    print(f"\nfaces format trap, {platform.node()} ({platform.processor() or platform.machine()}), "
          f"EfficientNet-Lite0 at {args.image_size}px, 3+3 epochs, test = 20% held out (seed 0)\n")
    cols = ["recipe", "auc_clean", "auc_reencode_both_jpeg90", "acc_clean", "acc_reencode_both_jpeg90",
            "auc_jpeg_q75", "auc_jpeg_q50", "train_seconds"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    (work / "faces_format_trap.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
