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

from fakedetect import CLASS_NAMES
from fakedetect.atomic import atomic_path, write_json
from fakedetect.card import ModelCard
from fakedetect.config import TrainConfig, load_config, recipe_intact
from fakedetect.data.splits import Split
from fakedetect.domain import MAX_FIT_IMAGES, METHOD, QUANTILE, fit_domain
from fakedetect.framing import Framing
from fakedetect.generators import generators_of, measured
from fakedetect.metrics import apply_temperature, binary_metrics, choose_threshold, ece, fit_temperature
from fakedetect.run import load_run
from fakedetect.runfolder import CHECKPOINTS_DIR, CONFIG_FILE, CURVES_FILE, DOMAIN_FILE, MODEL_FILE, STATE_FILE
from fakedetect.training.cluster import num_workers, replicas
from fakedetect.training.inputs import DataSummary, prepare_data
from fakedetect.training.loop import read_state
from fakedetect.training.setup import Setup
from fakedetect.training.validation import score_split

log = logging.getLogger(__name__)

FEW_VAL_IMAGES = 50  # per class: below this, validation metrics, threshold and calibration are warned about
MIN_CALIBRATION_IMAGES = 20  # per class: below this, no temperature or threshold is fitted


@dataclass
class TrainResult:
    run_dir: Path
    history: pd.DataFrame
    val_metrics: dict
    seconds: float


def finish_run(s: Setup, rows: list[dict], model) -> TrainResult:
    """Best model -> calibration on validation -> domain -> curves -> model card; returns the result."""
    from fakedetect.models.classifier import load_model
    from fakedetect.plots import plot_training_curves

    run_dir, cfg, strategy, train_split, val_split, summary = s.run_dir, s.cfg, s.strategy, s.train, s.val, s.summary
    size = cfg.framing  # scored as predict scores: resized, or crops combined

    if not (run_dir / MODEL_FILE).exists():
        # No finite validation loss was ever seen: keep the last model rather than nothing.
        with atomic_path(run_dir / MODEL_FILE, suffix=".keras") as tmp:
            model.save(tmp)
    best = load_model(run_dir / MODEL_FILE)
    if min(val_split.counts().values()) < FEW_VAL_IMAGES:
        log.warning(f"warning: validation holds {val_split.counts()} images: below {FEW_VAL_IMAGES} per class its "
                    "metrics, threshold and calibration mean little; give more data or a larger --val-fraction")
    # One pass over the validation images gives both what calibration needs and the domain threshold's features.
    raw, val_feats, _ = score_split(best, val_split, size, cfg.batch_size, "scored validation images",
                                     _domain_sample(len(val_split), cfg.seed))
    ok = ~np.isnan(raw)  # a file TensorFlow could not decode after all is left out
    y = np.asarray(val_split.labels)
    calibration, threshold, val_metrics = calibrate_on_validation(y[ok], raw[ok], cfg)
    if summary.sources:
        val_metrics["sources"] = _per_source(summary.sources, val_split, y, raw, calibration, threshold)
    domain = fit_domain_model(best, train_split, val_feats, size, cfg, run_dir, summary)
    history = pd.DataFrame(rows)
    if len(history):
        plot_training_curves(history, run_dir / CURVES_FILE)
    seconds = time.perf_counter() - s.t_start
    card = ModelCard(
        created=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        backbone=cfg.backbone, weights=cfg.weights, image_size=cfg.image_size, **size.to_dict(), threshold=threshold,
        threshold_rule=_threshold_rule(cfg, calibration), calibration=calibration,
        strategy={"name": cfg.strategy, "kind": type(strategy).__name__, "replicas": replicas(strategy),
                  "workers": num_workers(strategy), "global_batch_size": s.global_batch},
        data=summary.to_dict(), domain=domain, val_metrics=val_metrics,
        generators={src["name"]: generators_of(src["name"], src.get("generators")) for src in summary.spec},
        generalisation=measured(cfg.recipe) if recipe_intact(cfg) else None,
        epochs_run={phase: int((history["phase"] == phase).sum()) if len(history) else 0
                    for phase in ("frozen", "finetune")},
        train_seconds=round(seconds, 1))
    card.write(run_dir)
    write_json(run_dir / STATE_FILE, {**read_state(run_dir), "phase": "done"})
    shutil.rmtree(run_dir / CHECKPOINTS_DIR, ignore_errors=True)  # the run is complete: model.keras is the result
    auc = "undefined" if val_metrics["roc_auc"] is None else f"{val_metrics['roc_auc']:.4f}"
    log.info(f"best validation: loss {val_metrics['loss']:.4f} accuracy {val_metrics['accuracy']:.4f} "
             f"balanced accuracy {val_metrics['balanced_accuracy']:.4f} AUC {auc}")
    log.info(f"done in {seconds:.0f}s: {run_dir}")
    return TrainResult(run_dir, history, val_metrics, seconds)


def _per_source(sources: list[dict], val: Split, y: np.ndarray, raw: np.ndarray, calibration: dict,
                threshold: float) -> dict:
    """Validation metrics of each source at the run's threshold (one threshold serves every source)."""
    src = np.asarray(val.sources, int)
    out = {}
    for k, source in enumerate(sources):
        sel = (src == k) & ~np.isnan(raw)
        if not sel.any():
            out[source["name"]] = None
            log.warning(f"  validation, {source['name']}: no image could be scored")
            continue
        out[source["name"]] = binary_metrics(y[sel], apply_temperature(raw[sel], calibration["temperature"]),
                                             threshold)
        m = out[source["name"]]
        auc = "undefined" if m["roc_auc"] is None else f"{m['roc_auc']:.4f}"
        log.info(f"  validation, {source['name']}: {int(sel.sum())} images, accuracy {m['accuracy']:.4f}, AUC {auc}")
    return out


def _threshold_rule(cfg: TrainConfig, calibration: dict) -> str:
    if calibration.get("skipped"):
        return "0.5 (validation too small to choose one)"
    rule = "balanced accuracy" if cfg.target_fpr is None else f"false-positive rate <= {cfg.target_fpr}"
    return rule + " on validation, on calibrated probabilities"


def calibrate_on_validation(y: np.ndarray, raw: np.ndarray, cfg: TrainConfig) -> tuple[dict, float, dict]:
    """Fits temperature scaling and picks the decision threshold on the validation images' labels ``y`` and
    uncalibrated P(fake) ``raw``.

    Returns:
        (calibration facts, threshold on calibrated P(fake), validation metrics at that threshold).
    """
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


def _domain_sample(n: int, seed: int) -> np.ndarray:
    """Sorted positions of at most MAX_FIT_IMAGES of ``n`` images, drawn with ``seed``."""
    return np.sort(np.random.default_rng(seed).permutation(n)[:MAX_FIT_IMAGES])


def fit_domain_model(model, train_split: Split, val_features: list[np.ndarray], size: int | Framing,
                     cfg: TrainConfig, run_dir: Path, summary: DataSummary) -> dict:
    """Fits the density of the training images' features (see :mod:`fakedetect.domain`) with the threshold from
    the validation images' features, writes domain.npz and returns the model card's description of the domain."""
    from fakedetect.models.classifier import feature_taps
    from fakedetect.trace import TRACE_DEPTH

    t0 = time.perf_counter()
    fit = train_split.take(_domain_sample(len(train_split), cfg.seed + 1))
    _, f_fit, pos = score_split(model, fit, size, cfg.batch_size, "features of training images (domain)")
    groups = np.asarray(fit.labels)[pos] + 2 * np.asarray(fit.sources)[pos]
    domain = fit_domain(f_fit, groups, val_features, names=[TRACE_DEPTH, *feature_taps(model)])
    domain.save(run_dir / DOMAIN_FILE)
    n_val = len(val_features[0]) if val_features else 0
    side = np.sqrt(np.asarray(train_split.pixels, np.float64))
    log.info(f"training domain: feature density of {len(pos)} training images at {len(domain.depths)} depths, "
             f"threshold {domain.threshold:.2f} (the {QUANTILE:.0%} quantile of {n_val} validation images) "
             f"({time.perf_counter() - t0:.0f}s)")
    return {"method": METHOD, "depths": domain.names,
            "threshold": domain.threshold, "quantile_of_validation": QUANTILE, "fit_images": int(len(pos)),
            "validation_images": n_val,
            "image_side_px": {"min": int(side.min()), "median": int(np.median(side)), "max": int(side.max())}
            if len(side) else None,
            "formats": _formats(train_split),
            "sources": [src["path"] for src in summary.sources] if summary.sources else [summary.data_root]}


def _formats(split: Split) -> dict[str, dict[str, int]]:
    """File formats of the training images per class, e.g. {"real": {"PNG": 1800}, "fake": {"JPEG": 1800}}:
    a format that only one class has is a shortcut the model may have learned."""
    out: dict[str, dict[str, int]] = {}
    for label, fmt in zip(split.labels, split.formats or [""] * len(split), strict=True):
        per = out.setdefault(CLASS_NAMES[int(label)], {})
        per[fmt or "unknown"] = per.get(fmt or "unknown", 0) + 1
    return out


def refit_domain(run_dir: str | Path) -> dict:
    """Fits a finished run's domain model again, as training does now (a run trained before the multi-depth
    density gets it): its own data and config, the same validation carve. Rewrites domain.npz and the card's
    domain section; returns that section."""
    run = load_run(run_dir)
    cfg = load_config(Path(run_dir) / CONFIG_FILE)
    state = read_state(Path(run_dir))
    train_split, val_split, summary = prepare_data(state.get("data_root") or run.card.data["data_root"], cfg)
    _, val_feats, _ = score_split(run.model, val_split.take(_domain_sample(len(val_split), cfg.seed)),
                                  run.framing, cfg.batch_size, "features of validation images (domain)")
    domain = fit_domain_model(run.model, train_split, val_feats, run.framing, cfg, Path(run_dir), summary)
    run.card.domain = domain
    run.card.write(run_dir)
    return domain
