"""`fakedetect evaluate`: score a trained model on a separate test folder and write every figure and table."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fakedetect import CLASS_NAMES
from fakedetect.atomic import check_out_dir, fresh_dir, write_csv, write_json, write_skipped, write_text
from fakedetect.data.layout import choose_split, discover
from fakedetect.data.splits import Split, digest_ids, subsample, to_split
from fakedetect.evaluation.report import write_report
from fakedetect.metrics import binary_metrics, ece, reliability_bins
from fakedetect.run import DECODE_FAILED, Run, load_run
from fakedetect.runfolder import (
    CLASSIFICATION_REPORT_JSON,
    CLASSIFICATION_REPORT_TXT,
    CURVES_FILE,
    HASHES_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    PLOT_FILES,
    PREDICTIONS_FILE,
    REPORT_FILE,
    SKIPPED_FILE,
)

log = logging.getLogger(__name__)



@dataclass
class Scored:
    split: Split
    raw: np.ndarray  # uncalibrated P(fake)
    prob: np.ndarray  # calibrated P(fake)
    distance: np.ndarray | None = None  # domain distance (None: the run has no domain model)

    @property
    def y(self) -> np.ndarray:
        return np.asarray(self.split.labels, dtype=int)


@dataclass
class EvalResult:
    out_dir: Path
    metrics: dict


def load_test_split(data: str | Path, max_per_class: int | None = None) -> Split:
    """The split to evaluate: ``test`` if the folder has one, else the folder's only split (at most
    ``max_per_class`` images per class of it, drawn with a fixed seed)."""
    layout = discover(data, require_both=False)
    name = choose_split(layout, "test", data)
    log.info(f"scoring every image of {data} (it has no splits)" if name == "all"
             else f"scoring split '{name}' of {data}")
    if name in ("train", "val"):
        log.warning(f"WARNING: {data} holds only a '{name}' split: you are scoring images meant for training or "
                    "validation, not a held-out test set")
    return to_split(name, subsample(layout[name], max_per_class, 0), require_both=False)


def score(run: Run, split: Split, batch_size: int = 64, perturb=None, tta: bool = False) -> Scored:
    """Scores a checked split with the run (calibrated, with domain distances); undecodable files move to
    ``skipped``."""
    scores = run.score(paths=split.paths, pillow_only=split.pillow_only, batch_size=batch_size, tta=tta,
                       perturb=perturb)
    failed = np.setdiff1d(np.arange(len(split)), scores.kept)
    if len(failed):
        split = split.without(failed, DECODE_FAILED)
    dist = np.asarray(scores.domain_distance, float) if run.domain is not None else None
    return Scored(split, scores.raw, scores.prob_fake, dist)


def seen_in_training(run: Run, split: Split) -> tuple[np.ndarray, np.ndarray] | None:
    """(in the run's training images, in its validation images) for each image of ``split``, by content
    (byte-identical files). None for a run that recorded no content ids (trained before they were recorded)."""
    path = run.path / HASHES_FILE
    if not path.is_file() or not split.digests:
        return None
    with np.load(path) as z:
        train_ids, val_ids = z["train"], z["val"]
    ids = digest_ids(split.digests)
    return np.isin(ids, train_ids), np.isin(ids, val_ids)


def overlap_with_training(run: Run, s: Scored) -> dict | None:
    """How many test images are byte-identical to the run's training or validation images, and the metrics on
    the others. None for a run that recorded no content ids (trained before they were recorded)."""
    found = seen_in_training(run, s.split)
    if found is None:
        return None
    in_train, in_val = found
    seen = in_train | in_val
    out = {"n": int(seen.sum()), "share": float(seen.mean()) if len(seen) else 0.0,
           "in_train": int(in_train.sum()), "in_val": int(in_val.sum()), "metrics_without_overlap": None}
    if out["n"]:
        keep = ~seen
        if keep.any():
            out["metrics_without_overlap"] = binary_metrics(s.y[keep], s.prob[keep], run.threshold)
        log.warning(f"WARNING: {out['n']} of {len(seen)} test images ({out['share']:.1%}) are byte-identical to "
                    f"images this run was trained on ({out['in_train']}) or validated on ({out['in_val']}): "
                    "scores on them say nothing about new images.")
        m = out["metrics_without_overlap"]
        if m is None:
            log.warning("WARNING: every test image was seen in training or validation: these metrics are not a test.")
        else:
            auc = "undefined" if m["roc_auc"] is None else f"{m['roc_auc']:.4f}"
            log.info(f"         on the {m['n']} images it never saw: accuracy {m['accuracy']:.4f}, ROC AUC {auc}")
    return out


def domain_summary(run: Run, s: Scored) -> dict | None:
    """How many test images are unlike the training images, and the metrics on those that are like them."""
    if run.domain is None or s.distance is None:
        return None
    inside = run.domain.in_domain(s.distance)
    out = {"threshold": run.domain.threshold, "n_out_of_domain": int((~inside).sum()),
           "share_out_of_domain": float((~inside).mean()) if len(inside) else 0.0,
           "metrics_in_domain": binary_metrics(s.y[inside], s.prob[inside], run.threshold) if inside.any() else None}
    share = out["share_out_of_domain"]
    msg = (f"{out['n_out_of_domain']} of {len(inside)} test images ({share:.1%}) are unlike the images this run was "
           "trained on (domain distance above the 99th percentile of validation)")
    log.info(("WARNING: " + msg + ": its verdicts on them are unreliable") if share > 0.05 else msg)
    return out


def full_metrics(run: Run, s: Scored) -> dict:
    y = s.y
    m = binary_metrics(y, s.prob, run.threshold)
    m["at_0.5"] = binary_metrics(y, s.prob, 0.5)
    m["ece_uncalibrated"] = ece(y, s.raw) if len(y) else None
    m["temperature"] = run.temperature
    m["skipped"] = len(s.split.skipped)
    return m


def plan_out_dir(run_dir: Path, data: str | Path, out: str | Path | None, overwrite: bool,
                 kind: str = "eval") -> Path:
    """The output folder (``out``, or a new one in the run), checked before any work; not created yet."""
    if out is None:
        out = run_dir / f"{kind}-{Path(data).name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    return check_out_dir(out, overwrite, "output folder")


def evaluate(run_dir: str | Path, data: str | Path, out: str | Path | None = None, overwrite: bool = False,
             batch_size: int = 64, tta: bool = False, engine: str = "tensorflow") -> EvalResult:
    """Evaluates a run on a test folder; writes metrics, predictions, report, plots and report.html.

    With ``tta``, every image is scored with its mirror image as well (see
    :func:`fakedetect.run.scoring_function`).

    ``metrics.json`` is written last: when it exists, everything else is complete.
    """
    from sklearn.metrics import classification_report

    from fakedetect import plots

    run = load_run(run_dir, engine)
    out_dir = plan_out_dir(Path(run_dir), data, out, overwrite)
    split = load_test_split(data)
    fresh_dir(out_dir, overwrite)
    log.info(f"evaluating {run.path} on {len(split)} images {split.counts()}; skipped {len(split.skipped)} unreadable")
    s = score(run, split, batch_size, tta=tta)
    split = s.split  # without the files TensorFlow could not decode after all (now in split.skipped)
    m = full_metrics(run, s)
    m["overlap_with_training"] = overlap_with_training(run, s)
    m["domain"] = domain_summary(run, s)
    m["test_time_augmentation"] = "mean logit of the image and its mirror image" if tta else None
    m["model"] = {k: getattr(run.card, k) for k in ("backbone", "weights", "image_size", "input", "crops",
                                                    "crop_combine", "threshold", "created")}
    m["model"]["run_dir"] = str(run.path.resolve())
    m["model"]["engine"] = run.engine
    m["data"] = {"root": str(Path(data).resolve()), "split": split.name, "counts": split.counts()}
    m["evaluated"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")

    pred = (s.prob >= run.threshold).astype(int)
    df = pd.DataFrame({"path": split.paths, "label": s.y, "prob_fake": s.prob, "prob_real": 1 - s.prob,
                       "predicted": pred, **run.domain_fields(s.distance, len(s.y))})
    write_csv(out_dir / PREDICTIONS_FILE, df)
    write_skipped(out_dir / SKIPPED_FILE, split.skipped)
    labels = [0, 1]
    report_txt = classification_report(s.y, pred, labels=labels, target_names=list(CLASS_NAMES), digits=4,
                                       zero_division=0)
    report_dict = classification_report(s.y, pred, labels=labels, target_names=list(CLASS_NAMES),
                                        output_dict=True, zero_division=0)
    write_text(out_dir / CLASSIFICATION_REPORT_TXT, report_txt)
    write_json(out_dir / CLASSIFICATION_REPORT_JSON, report_dict)

    figs = {
        "confusion_matrix": plots.plot_confusion(m["confusion_matrix"], out_dir / PLOT_FILES["confusion_matrix"]),
        "roc_curve": plots.plot_roc(s.y, s.prob, m["roc_auc"], out_dir / PLOT_FILES["roc_curve"]),
        "pr_curve": plots.plot_pr(s.y, s.prob, m["average_precision"], out_dir / PLOT_FILES["pr_curve"]),
        "reliability": plots.plot_reliability(reliability_bins(s.y, s.prob), reliability_bins(s.y, s.raw),
                                              m["ece"], m["ece_uncalibrated"], out_dir / PLOT_FILES["reliability"]),
        "score_histogram": plots.plot_score_histogram(s.y, s.prob, run.threshold,
                                                      out_dir / PLOT_FILES["score_histogram"]),
    }
    hist_path = run.path / HISTORY_FILE
    if hist_path.is_file():
        figs["training_curves"] = plots.plot_training_curves(pd.read_csv(hist_path), out_dir / CURVES_FILE)
    write_report(out_dir / REPORT_FILE, run, m, figs, df, report_txt)
    write_json(out_dir / METRICS_FILE, m)
    return EvalResult(out_dir, m)


def summary_table(m: dict) -> pd.DataFrame:
    """A short table of the main metrics, at the run's threshold and at 0.5."""
    keys = ["accuracy", "balanced_accuracy", "precision", "recall", "f1", "specificity", "roc_auc",
            "average_precision", "eer", "ece", "loss"]
    at = m.get("at_0.5", {})
    rows = [{"metric": k, f"threshold {m['threshold']:.3f}": m.get(k), "threshold 0.5": at.get(k)} for k in keys]
    return pd.DataFrame(rows)
