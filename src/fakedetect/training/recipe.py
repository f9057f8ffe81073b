"""The training recipe, read top to bottom: check -> data -> run folder -> model -> phase 1 (the head on a frozen
backbone) -> phase 2 (the top of the backbone fine-tuned) -> finish (calibration, domain, model card).

Every strategy takes the same path (:mod:`fakedetect.training.loop`); only the chief writes the run folder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fakedetect.atomic import atomic_path, check_out_dir, fresh_dir, write_json, write_skipped, write_text
from fakedetect.config import TrainConfig, dump_config, load_config, resolve
from fakedetect.data.splits import digest_ids
from fakedetect.errors import ConfigError, DataError, RunError, RunExistsError
from fakedetect.models.lite_weights import lite_pth_path
from fakedetect.models.registry import check_unfreeze, check_weights_file, get_spec
from fakedetect.runfolder import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    HASHES_FILE,
    HISTORY_FILE,
    LOGS_DIR,
    RUN_FILES,
    SKIPPED_FILE,
    STATE_FILE,
)
from fakedetect.training.cluster import is_chief, make_strategy, num_workers, replicas, worker_index
from fakedetect.training.finish import TrainResult, finish_run
from fakedetect.training.inputs import DataSummary, class_weights, prepare_data
from fakedetect.training.loop import Loop, Recorder, read_state
from fakedetect.training.phases import finetune_phase, frozen_phase
from fakedetect.training.setup import Setup
from fakedetect.training.sums import all_reduce_sum, weights_digest

log = logging.getLogger(__name__)



def default_run_dir(cfg: TrainConfig) -> Path:
    return Path("runs") / f"{dt.datetime.now():%Y%m%d-%H%M%S}-{cfg.backbone}"


def preflight(cfg: TrainConfig, out: str | Path | None, overwrite: bool = False) -> None:
    """Everything about a training command that can be checked before the data scan and the run folder.

    Raises:
        ConfigError: an unfreeze target that matches no layer. WeightsError: a missing, unknown or refused
        weights file. RunExistsError: ``out`` holds files and ``overwrite`` was not given, or is a file.
    """
    check_unfreeze(cfg.backbone, cfg.unfreeze)
    if cfg.weights.lower() not in ("imagenet", "none"):
        check_weights_file(cfg.backbone, cfg.weights)
    elif cfg.weights.lower() == "imagenet" and get_spec(cfg.backbone).lite:
        lite_pth_path(get_spec(cfg.backbone).lite)  # the offline weight package is installed
    if out is not None and is_chief():
        check_out_dir(Path(out), overwrite, "run folder", RunExistsError)


def train(data_root, cfg: TrainConfig, out: str | Path | None = None, overwrite: bool = False,
          resume: bool = False) -> TrainResult:
    """Trains a model on ``data_root`` and writes a complete run folder (the chief's; other workers of a
    multi-worker run write into a temporary folder they remove). Progress goes to the ``fakedetect`` logger.

    Args:
        data_root: folder with real/ and fake/ (or train/val/test splits of them), or an archive of one; or a
            list of them (several sources: paths, or ``{path, weight, max_per_class}`` mappings); None: the
            config's ``data`` list.
        cfg: the configuration, final (a null ``image_size`` is resolved here to the backbone's native size: the
            run's config.yaml and model card hold the number; a resumed run's older config.yaml may hold null).
        out: run folder; a new timestamped folder under ``runs/`` when None.
        overwrite: allow a non-empty ``out``.
        resume: continue the interrupted run in ``out`` from its last checkpoint (see :func:`resume_training`).

    Raises:
        DataError: unusable data. RunExistsError: ``out`` holds a run. WeightsUnavailable: no ImageNet weights.
        StrategyError: a strategy that cannot be used (e.g. workers that never joined).
    """
    t_start = time.perf_counter()
    cfg = resolve(cfg)
    if not resume:
        preflight(cfg, out, overwrite)
    # The strategy comes before any other TensorFlow work (MultiWorkerMirroredStrategy configures the runtime).
    strategy = make_strategy(cfg.strategy, cfg.devices)
    if cfg.train_batchnorm and replicas(strategy) > 1:
        why = f" ({cfg.backbone} trains whole, BatchNorm included)" if get_spec(cfg.backbone).train_all else ""
        raise ConfigError(f"train_batchnorm with {replicas(strategy)} replicas{why}: each replica would keep its "
                          "own BatchNormalization statistics; train on one device, or leave BatchNorm frozen")
    train_split, val_split, summary = prepare_data(data_root, cfg)
    out = Path(out) if out is not None else default_run_dir(cfg)
    run_dir, created = _open_run_folder(out, overwrite, resume)
    setup = Setup(cfg, strategy, run_dir, out, train_split, val_split, summary, resume, t_start)
    try:
        return _train(setup)
    except BaseException:
        # A run that failed before its first epoch leaves no folder behind, so the corrected command can run.
        if setup.chief and created and not resume and not (run_dir / HISTORY_FILE).exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if not setup.chief:
            shutil.rmtree(run_dir, ignore_errors=True)


def resume_training(run_dir: str | Path) -> TrainResult:
    """Continues a killed run from its last checkpoint, with its own config, data and schedules.

    Raises:
        RunError: no interrupted run in ``run_dir``. RunExistsError: the run already finished.
    """
    run_dir = Path(run_dir)
    state = read_state(run_dir)
    if not (run_dir / CONFIG_FILE).is_file() or not state:
        raise RunError(f"{run_dir} holds no interrupted run to resume (no {CONFIG_FILE} / {STATE_FILE})")
    if state.get("phase") == "done":
        raise RunExistsError(f"the run in {run_dir} already finished; nothing to resume")
    return train(state["data_root"], load_config(run_dir / CONFIG_FILE), run_dir, resume=True)


def _open_run_folder(out: Path, overwrite: bool, resume: bool) -> tuple[Path, bool]:
    """(the folder this process writes, whether it was created now). Everything that can fail on bad input
    has run: only now is the run folder created (the chief's; other workers get a temporary one)."""
    if not is_chief():
        return Path(tempfile.mkdtemp(prefix="fakedetect-worker-")), True
    created = not out.exists() or not any(out.iterdir())
    run_dir = out if resume else fresh_dir(out, overwrite, "run folder", RunExistsError)
    if overwrite and not resume:
        # The files of an earlier run go, so none of them is taken for this run's (a stale model.json beside
        # new weights, an old model.keras as the "best so far").
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        for name in (CHECKPOINTS_DIR, LOGS_DIR):
            shutil.rmtree(run_dir / name, ignore_errors=True)
    return run_dir, created


def _train(s: Setup) -> TrainResult:
    """The recipe once the data is checked and the run folder exists."""
    import keras

    from fakedetect.models.classifier import build_model

    _describe(s)
    s.state = read_state(s.out) if s.resume else {}
    if s.chief:
        _write_run_inputs(s)
    s.state.setdefault("data_root", _data_spec(s.summary))
    keras.utils.set_random_seed(s.cfg.seed)
    mixed = _mixed_precision(s)
    with s.strategy.scope():
        model = build_model(s.cfg.backbone, s.cfg.weights, s.cfg.image_size, s.cfg.dropout, s.cfg.stochastic_depth,
                            any_size=bool(s.cfg.finetune_sizes))
    loop = _make_loop(s, model, mixed)
    if num_workers(s.strategy) > 1:
        _check_same_data(s)
    if s.cfg.epochs_frozen > 0 and s.state.get("phase", "frozen") == "frozen":
        loop.run(frozen_phase(s, loop))
        loop.state.update(phase="finetune", phase_epoch=0, checkpoint=None, stopped=False,
                          plateau=None, early_stopping=None)
        if s.chief:
            write_json(s.run_dir / STATE_FILE, loop.state)
    if s.cfg.epochs_finetune > 0:
        loop.load_best()  # fine-tune from the best frozen-phase model
        loop.run(finetune_phase(s, loop))
    if replicas(s.strategy) > 1:
        log.info(f"final weights checksum {weights_digest(model)} (the same on every replica and worker)")
    if not s.chief:
        log.info(f"worker {worker_index(s.strategy)} done; the chief writes the run folder")
        return TrainResult(s.out, pd.DataFrame(loop.recorder.rows), {}, time.perf_counter() - s.t_start)
    return finish_run(s, loop.recorder.rows, model)


def _data_spec(summary: DataSummary):
    """What a resumed run reads its data from: every source with its weight, cap and name."""
    return summary.spec or summary.data_root


def _describe(s: Setup) -> None:
    n_rep = replicas(s.strategy)
    log.info(f"run folder: {s.run_dir}" + ("" if s.chief else f" (worker {worker_index(s.strategy)}: temporary "
                                                               f"copy; the chief writes {s.out})"))
    if n_rep > 1 or s.cfg.strategy != "auto":
        log.info(f"strategy {type(s.strategy).__name__}: {n_rep} replica(s) on {num_workers(s.strategy)} "
                 f"machine(s), global batch {s.global_batch}, learning rates x{s.lr_scale}")
    log.info(f"train: {s.train.counts()}  val: {s.val.counts()}  ({s.summary.val_source})")
    for src, share in zip(s.summary.sources, s.mix or [], strict=False):
        log.info(f"  source {src['name']}: train {src['train']}, val {src['val']} ({src['val_source']}); "
                 f"{share:.0%} of the training batches")
    if s.summary.skipped:
        log.info(f"skipped {s.summary.skipped} unreadable file(s): listed in {s.run_dir / SKIPPED_FILE}")


def _write_run_inputs(s: Setup) -> None:
    """The chief's record of what this run trains on: config, state, skipped files, content ids."""
    if not s.resume:
        write_text(s.run_dir / CONFIG_FILE, dump_config(s.cfg))
        write_json(s.run_dir / STATE_FILE, {"data_root": _data_spec(s.summary), "phase": "frozen"})
    elif (s.run_dir / HISTORY_FILE).is_file():
        # Epochs after the last state.json (killed between the two writes) are run again: drop their rows.
        rows = pd.read_csv(s.run_dir / HISTORY_FILE)
        rows = rows[rows["epoch"] <= int(s.state.get("epoch", 0))]
        with atomic_path(s.run_dir / HISTORY_FILE, suffix=".csv") as tmp:
            rows.to_csv(tmp, index=False)
    write_skipped(s.run_dir / SKIPPED_FILE, s.train.skipped + s.val.skipped)
    # Content ids of every training and validation image: evaluate uses them to flag a test set that overlaps.
    with atomic_path(s.run_dir / HASHES_FILE, suffix=".npz") as tmp:
        np.savez_compressed(tmp, train=digest_ids(s.train.digests), val=digest_ids(s.val.digests))


def _mixed_precision(s: Setup) -> bool:
    """Whether to compute in float16 (GPUs, one replica); sets Keras' policy before the model is built."""
    import keras
    import tensorflow as tf

    if not s.cfg.mixed_precision:
        return False
    if not tf.config.list_logical_devices("GPU"):
        log.info("mixed precision ignored: it speeds up GPUs only")
        return False
    if replicas(s.strategy) > 1:
        # Keras' LossScaleOptimizer decides to skip an overflowing step per replica, before the gradients are
        # summed: replicas (and workers) would disagree, and a multi-worker job would hang. Not until it is global.
        log.info("mixed precision ignored with several replicas (loss-scale decisions would differ per replica)")
        return False
    keras.mixed_precision.set_global_policy("mixed_float16")
    return True


def _make_loop(s: Setup, model, mixed: bool) -> Loop:
    weights = class_weights(s.train, s.cfg.class_weights, s.mix)
    if not np.allclose(weights, 1):
        log.info(f"class weights (imbalanced classes): real {weights[0]:.3f}, fake {weights[1]:.3f}")
    done = int(s.state.get("epoch", 0))
    history = pd.read_csv(s.out / HISTORY_FILE).to_dict(orient="records") \
        if s.resume and (s.out / HISTORY_FILE).is_file() else []
    recorder = Recorder(s.run_dir, s.chief, rows=[r for r in history if r["epoch"] <= done])
    return Loop(s.strategy, s.cfg, model, s.global_batch, weights, recorder, s.run_dir / CHECKPOINTS_DIR, s.out,
                s.state, mixed_precision=mixed, best_val_loss=float(s.state.get("best_val_loss", np.inf)),
                epochs_done=done if s.resume else 0, resumed=s.resume, source_names=s.source_names)


def _check_same_data(s: Setup) -> None:
    """Every worker must see the same images (same files, same checks): the shards and the number of steps come
    from them, and a mismatch would make the workers' collectives disagree (a hang), or shards overlap."""
    n_workers = num_workers(s.strategy)
    h = hashlib.sha1("".join(s.train.digests + ["|"] + s.val.digests + ["|", str(s.mix)]).encode()).hexdigest()
    local = np.array([len(s.train), len(s.val), int(h[:10], 16)], np.float64)  # 40 bits: exact in float64
    total = all_reduce_sum(s.strategy, local)
    if not np.array_equal(total, local * n_workers):
        raise DataError(f"the {n_workers} workers do not see the same data (this one: {len(s.train)} training, "
                        f"{len(s.val)} validation images): give every machine the same --data (same files, "
                        "same options) and make sure no file is unreadable on only some of them")
    if len(s.train) < n_workers or len(s.val) < n_workers:
        raise DataError(f"{len(s.train)} training / {len(s.val)} validation images cannot be shared by "
                        f"{n_workers} workers")


