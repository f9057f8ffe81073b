"""`fakedetect robustness`: re-score a test set under perturbations applied identically to both classes.

A model that learned the file format, or the absence of compression, rather than real vs fake collapses here
(the "re-encode both classes as JPEG 90" row is the format-bias check).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fakedetect.atomic import atomic_path, write_json
from fakedetect.evaluate import full_metrics, load_test_split, new_out_dir, score
from fakedetect.inference import load_run

Log = Callable[[str], None]


def jpeg_reencode(q: int):
    """A function re-encoding a uint8 image as JPEG of quality ``q``."""
    import tensorflow as tf

    def f(img):
        return tf.ensure_shape(tf.image.adjust_jpeg_quality(img, q), [None, None, 3])

    return f


def blur(sigma: float):
    """A function blurring a uint8 image with a Gaussian of std ``sigma``."""
    import tensorflow as tf

    from fakedetect.pipeline import gaussian_blur

    def f(img):
        out = gaussian_blur(tf.cast(img, tf.float32), tf.constant(sigma, tf.float32), sigma)
        return tf.cast(tf.round(tf.clip_by_value(out, 0, 255)), tf.uint8)

    return f


def downscale(factor: float):
    """A function shrinking a uint8 image by ``factor`` and resizing it back."""
    import tensorflow as tf

    def f(img):
        hw = tf.shape(img)[:2]
        small = tf.maximum(tf.cast(tf.round(tf.cast(hw, tf.float32) * factor), tf.int32), 1)
        x = tf.image.resize(tf.cast(img, tf.float32), small, antialias=True)
        x = tf.image.resize(x, hw)
        return tf.cast(tf.round(tf.clip_by_value(x, 0, 255)), tf.uint8)

    return f


def perturbations() -> dict[str, Callable | None]:
    """Name -> function on a decoded uint8 image (None: unchanged)."""
    p: dict[str, Callable | None] = {"clean": None, "reencode_both_jpeg90": jpeg_reencode(90)}
    for q in (95, 75, 50, 30):
        p[f"jpeg_q{q}"] = jpeg_reencode(q)
    for s in (1, 2):
        p[f"blur_sigma{s}"] = blur(float(s))
    for f in (0.5, 0.25):
        p[f"downscale_{f}"] = downscale(f)
    return p


@dataclass
class RobustnessResult:
    out_dir: Path
    table: pd.DataFrame


def robustness(run_dir: str | Path, data: str | Path, out: str | Path | None = None, overwrite: bool = False,
               batch_size: int = 64, only: list[str] | None = None, log: Log = print) -> RobustnessResult:
    """Scores the test set once per perturbation; writes robustness.csv, robustness.json and robustness.png."""
    from fakedetect.plots import plot_robustness

    run = load_run(run_dir)
    split = load_test_split(data, log)
    todo = perturbations()
    if only:
        unknown = [n for n in only if n not in todo]
        if unknown:
            raise ValueError(f"unknown perturbation(s) {', '.join(unknown)}; known: {', '.join(todo)}")
        todo = {n: todo[n] for n in ["clean", *only] if n in todo}
    out_dir = new_out_dir(Path(run_dir), data, out, overwrite, kind="robustness")
    rows = []
    for name, fn in todo.items():
        m = full_metrics(run, score(run, split, batch_size, perturb=fn))
        rows.append({"perturbation": name, "roc_auc": m["roc_auc"], "accuracy": m["accuracy"],
                     "balanced_accuracy": m["balanced_accuracy"], "accuracy_real": m["accuracy_real"],
                     "accuracy_fake": m["accuracy_fake"], "eer": m["eer"], "ece": m["ece"], "n": m["n"]})
        auc = "undefined" if m["roc_auc"] is None else f"{m['roc_auc']:.4f}"
        log(f"  {name:22s} AUC {auc}  accuracy {m['accuracy']:.4f}")
    table = pd.DataFrame(rows)
    with atomic_path(out_dir / "robustness.csv") as tmp:
        table.to_csv(tmp, index=False)
    plot_robustness(table.fillna(0.5), out_dir / "robustness.png")
    write_json(out_dir / "robustness.json", {"run_dir": str(run.path.resolve()), "data": str(Path(data).resolve()),
                                              "threshold": run.threshold, "results": rows})
    return RobustnessResult(out_dir, table)
