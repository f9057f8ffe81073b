"""The chief's last steps of a run: the best model, its calibration and threshold on validation data, the
density of its training domain, the training curves and the model card."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fakedetect.atomic import atomic_path, write_json
from fakedetect.card import ModelCard
from fakedetect.config import TrainConfig
from fakedetect.data.splits import Split
from fakedetect.domain import DOMAIN_FILE, MAX_FIT_IMAGES, QUANTILE, fit_domain
from fakedetect.metrics import apply_temperature, binary_metrics, choose_threshold, ece, fit_temperature
from fakedetect.run import MODEL_FILE, predict_raw
from fakedetect.training.cluster import num_workers, replicas
from fakedetect.training.loop import STATE_FILE, read_state
from fakedetect.training.validation import features

log = logging.getLogger(__name__)

FEW_VAL_IMAGES = 50  # per class: below this, validation metrics, threshold and calibration are warned about
MIN_CALIBRATION_IMAGES = 20  # per class: below this, no temperature or threshold is fitted


@dataclass
class TrainResult:
    run_dir: Path
    history: pd.DataFrame
    val_metrics: dict
    seconds: float


def finish_run(run_dir: Path, cfg: TrainConfig, strategy, train_split: Split, val_split: Split, summary: dict,
               rows: list[dict], model, size: int, t_start: float) -> TrainResult:
    """Best model -> calibration on validation -> domain -> curves -> model card; returns the result."""
    from fakedetect.models.classifier import load_model
    from fakedetect.plots import plot_training_curves

    if not (run_dir / MODEL_FILE).exists():
        # No finite validation loss was ever seen: keep the last model rather than nothing.
        with atomic_path(run_dir / MODEL_FILE, suffix=".keras") as tmp:
            model.save(tmp)
    best = load_model(run_dir / MODEL_FILE)
    if min(val_split.counts().values()) < FEW_VAL_IMAGES:
        log.warning(f"warning: validation holds {val_split.counts()} images: below {FEW_VAL_IMAGES} per class its "
                    "metrics, threshold and calibration mean little; give more data or a larger --val-fraction")
    calibration, threshold, val_metrics = calibrate_on_validation(best, val_split, size, cfg)
    domain = fit_domain_model(best, train_split, val_split, size, cfg, run_dir)
    domain["sources"] = [summary["data_root"]]
    history = pd.DataFrame(rows)
    if len(history):
        plot_training_curves(history, run_dir / "training_curves.png")
    seconds = time.perf_counter() - t_start
    card = ModelCard(
        created=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        backbone=cfg.backbone, weights=cfg.weights, image_size=size, threshold=threshold,
        threshold_rule=_threshold_rule(cfg, calibration), calibration=calibration,
        strategy={"name": cfg.strategy, "kind": type(strategy).__name__, "replicas": replicas(strategy),
                  "workers": num_workers(strategy), "global_batch_size": cfg.batch_size * replicas(strategy)},
        data=summary, domain=domain, val_metrics=val_metrics,
        epochs_run={phase: int((history["phase"] == phase).sum()) if len(history) else 0
                    for phase in ("frozen", "finetune")},
        train_seconds=round(seconds, 1))
    card.write(run_dir)
    write_json(run_dir / STATE_FILE, {**read_state(run_dir), "phase": "done"})
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # the run is complete: model.keras is the result
    auc = "undefined" if val_metrics["roc_auc"] is None else f"{val_metrics['roc_auc']:.4f}"
    log.info(f"best validation: loss {val_metrics['loss']:.4f} accuracy {val_metrics['accuracy']:.4f} "
             f"balanced accuracy {val_metrics['balanced_accuracy']:.4f} AUC {auc}")
    log.info(f"done in {seconds:.0f}s: {run_dir}")
    return TrainResult(run_dir, history, val_metrics, seconds)


def _threshold_rule(cfg: TrainConfig, calibration: dict) -> str:
    if calibration.get("skipped"):
        return "0.5 (validation too small to choose one)"
    rule = "balanced accuracy" if cfg.target_fpr is None else f"false-positive rate <= {cfg.target_fpr}"
    return rule + " on validation, on calibrated probabilities"


def calibrate_on_validation(model, val: Split, image_size: int, cfg: TrainConfig) -> tuple[dict, float, dict]:
    """Fits temperature scaling and picks the decision threshold on validation data.

    Returns:
        (calibration facts, threshold on calibrated P(fake), validation metrics at that threshold).
    """
    raw = predict_raw(model, val.paths, image_size, cfg.batch_size, val.pillow_only)
    ok = ~np.isnan(raw)  # a file TensorFlow could not decode after all is left out
    y, raw = np.asarray(val.labels)[ok], raw[ok]
    small = int(min((y == 0).sum(), (y == 1).sum()))
    if small < MIN_CALIBRATION_IMAGES:
        # A temperature and a threshold fitted on a handful of images are noise (a perfectly separated tiny set
        # drives the temperature to its bound): keep the model's own probabilities and 0.5.
        calibration = {"method": "none", "temperature": 1.0, "val_ece_before": ece(y, raw),
                       "val_ece_after": ece(y, raw),
                       "skipped": f"fewer than {MIN_CALIBRATION_IMAGES} validation images of a class ({small})"}
        metrics = binary_metrics(y, raw, 0.5)
        metrics["at_0.5"] = binary_metrics(y, raw, 0.5)
        log.info(f"calibration skipped ({calibration['skipped']}): temperature 1, threshold 0.5")
        return calibration, 0.5, metrics
    temperature = fit_temperature(y, raw)
    cal = apply_temperature(raw, temperature)
    threshold = choose_threshold(y, cal, cfg.target_fpr)
    calibration = {"method": "temperature scaling on validation", "temperature": temperature,
                   "val_ece_before": ece(y, raw), "val_ece_after": ece(y, cal)}
    metrics = binary_metrics(y, cal, threshold)
    metrics["at_0.5"] = binary_metrics(y, cal, 0.5)
    log.info(f"calibration on validation: temperature {temperature:.3f}, ECE {calibration['val_ece_before']:.4f} "
             f"-> {calibration['val_ece_after']:.4f}; threshold {threshold:.4f}")
    return calibration, threshold, metrics


def fit_domain_model(model, train_split: Split, val_split: Split, size: int, cfg: TrainConfig,
                     run_dir: Path) -> dict:
    """Fits the density of the training images' features (see :mod:`fakedetect.domain`), writes domain.npz and
    returns the model card's description of the training domain."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    fit = train_split.take(np.sort(rng.permutation(len(train_split))[:MAX_FIT_IMAGES]))
    val = val_split.take(np.sort(rng.permutation(len(val_split))[:MAX_FIT_IMAGES]))
    f_fit, y_fit = features(model, fit, size, cfg.batch_size, "training images (domain)")
    f_val, _ = features(model, val, size, cfg.batch_size, "validation images (domain)")
    domain = fit_domain(f_fit, y_fit, f_val)
    domain.save(run_dir / DOMAIN_FILE)
    side = np.sqrt(np.asarray(train_split.pixels, np.float64))
    log.info(f"training domain: feature density of {len(f_fit)} training images, threshold {domain.threshold:.2f} "
             f"(the {QUANTILE:.0%} quantile of {len(f_val)} validation images) ({time.perf_counter() - t0:.0f}s)")
    return {"method": "Mahalanobis distance to the nearer class mean of backbone features (shared covariance, "
                      "Ledoit-Wolf); in domain when at most the threshold",
            "threshold": domain.threshold, "quantile_of_validation": QUANTILE, "fit_images": len(f_fit),
            "validation_images": len(f_val),
            "image_side_px": {"min": int(side.min()), "median": int(np.median(side)), "max": int(side.max())}
            if len(side) else None}
