"""The training loop: one tf.distribute custom loop for every strategy (one device, several GPUs, several
machines). Keras 3's ``fit()`` cannot run under MultiWorkerMirroredStrategy; this loop can, so every run, on a
laptop or a cluster, takes the same path.

Per step, each replica computes the per-example binary cross-entropy times its class weight, averaged over the
*global* batch (``tf.nn.compute_average_loss``); the Keras optimizer all-reduces (sums) the gradients across
replicas. Validation runs locally on each worker's share of the images and its sums are all-reduced once per
epoch, so the plateau, early-stopping and best-model decisions are the same on every worker.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fakedetect.atomic import atomic_path, write_json
from fakedetect.progress import EVERY_S
from fakedetect.runfolder import HISTORY_FILE, LOGS_DIR, MODEL_FILE, STATE_FILE
from fakedetect.training.schedules import EarlyStop, PhaseSchedule, Plateau
from fakedetect.training.sums import AUC_BINS, all_reduce_sum, sums_to_metrics

log = logging.getLogger(__name__)



@dataclass
class Phase:
    """One phase of training: what is trained, on what, how long, how fast."""
    name: str  # "frozen" or "finetune"
    model: object  # the keras.Model whose trainable weights this phase trains (the head, or the whole model)
    stream: Callable[[int, int], object]  # (seed offset, image size) -> distributed dataset of batches, endless
    validate: Callable[[], np.ndarray]  # this worker's validation sums (see binary_sums)
    epochs: int
    learning_rate: float
    steps: int  # per epoch, the same on every worker
    warmup_steps: int = 0
    sizes: list[int] = field(default_factory=list)  # training image size of each epoch (progressive resizing)


@dataclass
class Recorder:
    """What the chief writes each epoch: history.csv, state.json, TensorBoard. Other workers write nothing."""
    run_dir: Path
    chief: bool
    rows: list[dict] = field(default_factory=list)
    writer: object = None

    def epoch(self, row: dict, state: dict) -> None:
        import pandas as pd

        self.rows.append(row)
        if not self.chief:
            return
        with atomic_path(self.run_dir / HISTORY_FILE, suffix=".csv") as tmp:
            pd.DataFrame(self.rows).to_csv(tmp, index=False)
        write_json(self.run_dir / STATE_FILE, state)
        if self.writer is None:
            import tensorflow as tf

            self.writer = tf.summary.create_file_writer(str(self.run_dir / LOGS_DIR))
        import tensorflow as tf

        with self.writer.as_default():
            for k, v in row.items():
                if isinstance(v, float) and k not in ("seconds",):
                    tf.summary.scalar(k, v, step=row["epoch"])
            self.writer.flush()


@dataclass
class Loop:
    """Runs phases under one strategy, keeping the best model by validation loss across them."""
    strategy: object
    cfg: object  # TrainConfig
    model: object  # the full model: what is saved and checkpointed
    global_batch: int
    class_weights: np.ndarray
    recorder: Recorder
    checkpoint_dir: Path  # where this worker writes its checkpoints (the chief's: in the run folder)
    read_dir: Path  # the run folder, where a resumed run's checkpoint is read from (every worker)
    state: dict
    mixed_precision: bool = False
    resumed: bool = False
    best_val_loss: float = math.inf
    best_weights: list | None = None
    epochs_done: int = 0
    source_names: list[str] = field(default_factory=list)  # several sources: validation metrics of each

    def save_best(self) -> None:
        """Keeps the best weights in memory on every worker; the chief also writes model.keras."""
        self.best_weights = [np.array(w.numpy()) for w in self.model.weights]
        if self.recorder.chief:
            with atomic_path(self.recorder.run_dir / MODEL_FILE, suffix=".keras") as tmp:
                self.model.save(tmp)

    def load_best(self) -> None:
        """Puts the best weights so far back in the model (before fine-tuning, and at the end)."""
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        elif self.resumed and (self.read_dir / MODEL_FILE).is_file():  # the chief's file (shared storage)
            self.model.load_weights(self.read_dir / MODEL_FILE)

    def _optimizer(self, learning_rate: float, variables):
        import keras

        # With ema_decay, Keras keeps the moving average of the weights (across replicas) inside the optimizer.
        ema = self.cfg.ema_decay
        # With weight_decay, Adam applies it decoupled (AdamW: w -= lr * decay * w), to kernels only.
        decay = float(self.cfg.weight_decay) or None
        opt = keras.optimizers.Adam(learning_rate, weight_decay=decay, use_ema=bool(ema), ema_momentum=ema or 0.99)
        if decay:
            opt.exclude_from_weight_decay(var_list=[v for v in variables if len(v.shape) <= 1])
        if self.mixed_precision:
            opt = keras.optimizers.LossScaleOptimizer(opt)
        opt.build(variables)
        return opt

    def _train_step(self, model, optimizer):
        import keras
        import tensorflow as tf

        strategy, global_batch = self.strategy, self.global_batch
        class_w = tf.constant(self.class_weights, tf.float32)
        variables = model.trainable_variables
        smoothing = float(self.cfg.label_smoothing)

        # No AutoGraph: the steps hold no Python control flow on tensors, and converting them only costs time.
        @tf.autograph.experimental.do_not_convert
        def replica_step(x, y):
            with tf.GradientTape() as tape:
                p = tf.reshape(tf.cast(model(x, training=True), tf.float32), [-1])
                # y is each example's share of fake (0 or 1; a fraction under mixup). Cross-entropy is linear in
                # its target, so the loss is y x (loss towards fake) + (1 - y) x (loss towards real), each term with
                # its class's weight: the per-term weighting mixup calls for; for 0/1 labels, w[y] x BCE(y, p).
                to_fake = keras.losses.binary_crossentropy(smooth_labels(tf.ones_like(y), smoothing)[:, None],
                                                           p[:, None])
                to_real = keras.losses.binary_crossentropy(smooth_labels(tf.zeros_like(y), smoothing)[:, None],
                                                           p[:, None])
                per_example = y * to_fake + (1 - y) * to_real
                weighted = y * class_w[1] * to_fake + (1 - y) * class_w[0] * to_real
                # Divided by the global batch: summed over replicas, the gradients are the batch mean.
                loss = tf.nn.compute_average_loss(weighted, global_batch_size=global_batch)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
                scaled = optimizer.scale_loss(loss) if self.mixed_precision else loss
            grads = tape.gradient(scaled, variables)
            optimizer.apply_gradients(zip(grads, variables, strict=True))
            correct = tf.reduce_sum(tf.cast(tf.equal(p >= 0.5, y >= 0.5), tf.float32))
            bins = tf.minimum(tf.cast(p * AUC_BINS, tf.int32), AUC_BINS - 1)
            pos = tf.math.bincount(bins, weights=y, minlength=AUC_BINS, maxlength=AUC_BINS, dtype=tf.float32)
            neg = tf.math.bincount(bins, weights=1 - y, minlength=AUC_BINS, maxlength=AUC_BINS, dtype=tf.float32)
            head = tf.stack([tf.reduce_sum(per_example), tf.cast(tf.size(y), tf.float32), correct])
            return tf.concat([head, pos, neg], 0)  # as binary_sums: [loss sum, count, correct, histograms]

        @tf.function(autograph=False)
        def step(iterator):
            per_replica = strategy.run(replica_step, args=next(iterator))
            return tf.add_n(strategy.experimental_local_results(per_replica))  # this worker's sums

        return step

    def run(self, phase: Phase) -> None:
        """Trains one phase: epochs of ``phase.steps`` steps, validation, schedules, checkpoints."""
        import tensorflow as tf

        cfg = self.cfg
        with self.strategy.scope():
            optimizer = self._optimizer(phase.learning_rate, phase.model.trainable_variables)
        ckpt = tf.train.Checkpoint(model=self.model, optimizer=optimizer)
        manager = tf.train.CheckpointManager(ckpt, str(self.checkpoint_dir / phase.name), max_to_keep=2)
        sched = PhaseSchedule(phase.learning_rate, phase.epochs * phase.steps, phase.warmup_steps,
                              cfg.schedule == "cosine", cfg.min_lr_ratio,
                              Plateau(cfg.reduce_lr_patience, cfg.reduce_lr_factor),
                              EarlyStop(cfg.early_stopping_patience))
        if sched.warmup_steps < phase.warmup_steps:
            log.info(f"  warm-up of {phase.warmup_steps} steps shortened to {sched.warmup_steps} (a fifth of the "
                     f"phase's {sched.total_steps} steps)")
        done = 0
        if self.state.get("phase") == phase.name and self.state.get("checkpoint"):
            ckpt.restore(str(self.read_dir / self.state["checkpoint"])).assert_existing_objects_matched()
            done = int(self.state["phase_epoch"])
            sched.restore(self.state)
            if self.state.get("stopped") or done >= phase.epochs:
                return
        step = self._train_step(phase.model, optimizer)
        iterator, size = None, None
        sizes = phase.sizes or [0] * phase.epochs
        for e in range(done + 1, phase.epochs + 1):
            if iterator is None or sizes[e - 1] != size:
                # A new shuffling seed after a resume or a size change, so that later epochs do not replay the
                # first ones; a new size is a new stream (and one new trace of the step).
                size = sizes[e - 1]
                iterator = iter(phase.stream(e - 1, size))
            t0 = time.perf_counter()
            train, lr = self._train_epoch(phase, step, iterator, optimizer, sched, (e - 1) * phase.steps)
            val, kept = self._validate_and_keep_best(phase, optimizer)
            self.epochs_done += 1
            row = {"epoch": self.epochs_done, "phase": phase.name, "loss": train["loss"],
                   "accuracy": train["accuracy"], "auc": train["auc"], "val_loss": val["loss"],
                   "val_accuracy": val["accuracy"], "val_auc": val["auc"], "learning_rate": lr,
                   "image_size": size or None, "weights": kept["weights"], "val_loss_raw": kept["raw"],
                   "val_loss_ema": kept["ema"], "seconds": round(time.perf_counter() - t0, 2)}
            for name, m in zip(self.source_names, val.get("sources", []), strict=False):
                row[f"val_auc[{name}]"], row[f"val_accuracy[{name}]"] = m["auc"], m["accuracy"]
            stopping, notes = sched.after_epoch(val["loss"], e)
            saved = manager.save()  # every worker saves (the others into their temporary folder)
            self.state.update(phase=phase.name, phase_epoch=e, epoch=self.epochs_done, **sched.state(),
                              best_val_loss=self.best_val_loss, stopped=stopping,
                              checkpoint=str(Path(saved).relative_to(self.checkpoint_dir.parent)))
            self.recorder.epoch(row, self.state)
            log.info(f"[{phase.name}] epoch {row['epoch']}: loss {row['loss']:.4f} val_loss {row['val_loss']:.4f} "
                     f"val_accuracy {row['val_accuracy']:.4f} val_auc {row['val_auc']:.4f} lr {lr:.1e}"
                     + (f" size {size}" if size else "") + (" (moving average)" if kept["weights"] == "ema" else "")
                     + f" ({row['seconds']:.1f}s)")
            for note in notes:
                log.info(note)
            if stopping:
                break

    def _train_epoch(self, phase: Phase, step, iterator, optimizer, sched: PhaseSchedule,
                     global_step: int) -> tuple[dict, float]:
        """One epoch of steps at the scheduled rates; (training metrics, the rate of its last step)."""
        t0 = t_last = time.perf_counter()
        sums = np.zeros(3 + 2 * AUC_BINS)
        current = None
        for s in range(phase.steps):
            r = sched.rate(global_step + s)
            if r != current:
                optimizer.learning_rate.assign(r)
                current = r
            sums += np.asarray(step(iterator), np.float64)
            now = time.perf_counter()
            if now - t_last >= EVERY_S:
                t_last = now
                log.info(f"  [{phase.name}] epoch {self.epochs_done + 1}: batch {s + 1}/{phase.steps}, "
                         f"loss {sums[0] / max(sums[1], 1):.4f}, {now - t0:.0f}s")
        return sums_to_metrics(all_reduce_sum(self.strategy, sums)), current

    def _validate_and_keep_best(self, phase: Phase, optimizer) -> tuple[dict, dict]:
        """Validates the weights (and, with ema_decay, their moving average: the better of the two counts) and
        saves them when they are the best so far. Training goes on from the raw weights either way."""
        val = _metrics(all_reduce_sum(self.strategy, phase.validate()))
        kept = {"weights": "raw", "raw": val["loss"], "ema": None}
        raw = None
        if self.cfg.ema_decay:
            variables = phase.model.trainable_variables
            raw = [np.array(v.numpy()) for v in variables]
            optimizer.finalize_variable_values(variables)  # the moving average into the model
            ema = _metrics(all_reduce_sum(self.strategy, phase.validate()))
            kept["ema"] = ema["loss"]
            if np.isfinite(ema["loss"]) and not ema["loss"] >= val["loss"]:
                val, kept["weights"] = ema, "ema"
            else:
                _assign(variables, raw)
        if np.isfinite(val["loss"]) and val["loss"] < self.best_val_loss:
            self.best_val_loss = val["loss"]
            self.save_best()
        if raw is not None:
            _assign(phase.model.trainable_variables, raw)
        return val, kept


def _metrics(sums: np.ndarray) -> dict:
    """Validation metrics of all images, and of each source (``sources``) when the sums hold several."""
    n = 3 + 2 * AUC_BINS
    out = sums_to_metrics(sums[:n])
    if len(sums) > n:
        out["sources"] = [sums_to_metrics(sums[i:i + n]) for i in range(n, len(sums), n)]
    return out


def _assign(variables, values) -> None:
    for v, w in zip(variables, values, strict=True):
        v.assign(w)


def smooth_labels(y, smoothing: float):
    """Label smoothing for a binary target: 0/1 become smoothing/2 and 1 - smoothing/2."""
    return y if not smoothing else y * (1.0 - smoothing) + 0.5 * smoothing


def read_state(run_dir: Path) -> dict:
    p = Path(run_dir) / STATE_FILE
    return json.loads(p.read_text()) if p.is_file() else {}
