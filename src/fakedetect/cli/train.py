"""Commands that train: train (one machine or many) and demo (the whole job end to end)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from fakedetect.cli.main import (
    DEFAULTS,
    FRACTION,
    NON_NEGATIVE,
    OUT_DIR,
    PORT,
    POSITIVE,
    RATE,
    echo,
    friendly_errors,
    main,
    tensorflow,
    verbose_option,
)
from fakedetect.cli.serve import check_port, serve
from fakedetect.config import DEMO_PER_CLASS, SCHEDULES, STRATEGIES, presets
from fakedetect.framing import COMBINE_RULES, CROP_COUNTS, INPUT_MODES
from fakedetect.models.registry import BACKBONES


def _unfreeze_value(ctx, param, value):
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def _default(name: str, unit: str = "") -> str:
    return f"(default: the config's, else {getattr(DEFAULTS, name)}{unit})"


@main.command()
@click.option("--data", type=click.Path(path_type=Path), multiple=True,
              help="Folder with real/ and fake/ (or train/ val/ test/ splits of them), or an archive of one. "
                   "Repeat it to train on several sources at once (each carved and validated on its own, mixed "
                   "equally; weights and caps per source in the config's `data:` list).")
@click.option("--resume", type=click.Path(path_type=Path),
              help="Continue the killed run in this folder from its last finished epoch (no other option).")
@click.option("--config", "config_path", metavar="NAME|FILE",
              help=f"A shipped recipe ({', '.join(presets())}; see `fakedetect configs`) or a YAML file. Without "
                   "it: EfficientNet-B4 at 380 px with ImageNet weights, 5 frozen + 10 fine-tuning epochs (the "
                   "'default' recipe: practical on a GPU only).")
@click.option("--out", type=OUT_DIR, help="Run folder (default: runs/<time>-<backbone>).")
@click.option("--overwrite", is_flag=True, help="Replace the files of an existing run folder.")
@click.option("--backbone", type=click.Choice(list(BACKBONES)), metavar="NAME",
              help=f"One of {', '.join(BACKBONES)} " + _default("backbone"))
@click.option("--weights", help="imagenet, none, or a weights file (.weights.h5, .keras; .pth for Lite) "
              + _default("weights"))
@click.option("--image-size", type=click.IntRange(32, 1024),
              help="Square input size in px (default: the config's, else the backbone's native size).")
@click.option("--input", "input", type=click.Choice(INPUT_MODES),
              help="resize: every image resized to the input size; crop: native-resolution crops of that size "
                   "(random in training, fixed ones combined in scoring) " + _default("input"))
@click.option("--crops", type=click.Choice([str(k) for k in CROP_COUNTS]), callback=lambda c, p, v: v and int(v),
              help="Crop mode: crops scored per image (1 centre, 5 corners + centre, 9 grid) " + _default("crops"))
@click.option("--crop-combine", type=click.Choice(COMBINE_RULES),
              help="Crop mode: mean of the crops' logits, or max (any region generated) " + _default("crop_combine"))
@click.option("--epochs-frozen", type=NON_NEGATIVE, help="Epochs with the backbone frozen " + _default("epochs_frozen"))
@click.option("--epochs-finetune", type=NON_NEGATIVE,
              help="Epochs with the top layers unfrozen " + _default("epochs_finetune"))
@click.option("--unfreeze", callback=_unfreeze_value, metavar="N|BLOCK",
              help="Top N backbone layers, or a block name such as block6 " + _default("unfreeze"))
@click.option("--train-batchnorm/--freeze-batchnorm", default=None,
              help="Fine-tune the unfrozen layers' BatchNormalization too (statistics from the training batches) "
                   "or keep ImageNet's " + _default("train_batchnorm"))
@click.option("--batch-size", type=POSITIVE, help="Images per batch, per replica " + _default("batch_size"))
@click.option("--lr-frozen", type=RATE, help="Learning rate of phase 1 " + _default("lr_frozen"))
@click.option("--lr-finetune", type=RATE, help="Learning rate of phase 2 " + _default("lr_finetune"))
@click.option("--schedule", type=click.Choice(SCHEDULES),
              help="Learning-rate schedule: plateau (cut when validation loss stalls; early stopping) or cosine "
                   "(warm-up, then decay to the last step of each phase) " + _default("schedule"))
@click.option("--ema-decay", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Keep a moving average of the weights with this decay (e.g. 0.999); each epoch the better of "
                   "it and the raw weights is validated and kept (default: the config's, else none).")
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True),
              help="Train towards s/2 and 1 - s/2 instead of 0 and 1 " + _default("label_smoothing"))
@click.option("--mixup", type=click.FloatRange(0, 10), metavar="ALPHA",
              help="Mix each batch of training images with a shuffle of itself, images and labels, by "
                   "lam ~ Beta(ALPHA, ALPHA) (not the frozen phase's cached features) "
                   + _default("mixup"))
@click.option("--weight-decay", type=click.FloatRange(0, 1, max_open=True),
              help="Decoupled weight decay (AdamW): kernels shrink by rate x decay each step "
                   + _default("weight_decay"))
@click.option("--val-fraction", type=FRACTION,
              help="Validation fraction carved when there is no val/ split " + _default("val_fraction"))
@click.option("--max-per-class", type=click.IntRange(min=2),
              help="Train on a stratified subset of at most N images per class (default: all).")
@click.option("--seed", type=NON_NEGATIVE, help="Seed of splits, shuffling and augmentation " + _default("seed"))
@click.option("--strategy", type=click.Choice(STRATEGIES),
              help="tf.distribute strategy: mirrored = every local GPU; multi-worker = machines in $TF_CONFIG "
                   + _default("strategy"))
@click.option("--devices", callback=lambda c, p, v: v.split(",") if v else None,
              help="Comma-separated devices for one-device/mirrored, e.g. /gpu:0,/gpu:1.")
@click.option("--workers", "cluster", callback=lambda c, p, v: v.split(",") if v else None, metavar="HOST:PORT,...",
              help="Multi-worker: every machine of the job, the chief first (sets $TF_CONFIG for you; implies "
                   "--strategy multi-worker). Run the same command on each machine with its --task-index.")
@click.option("--task-index", type=NON_NEGATIVE, help="Multi-worker: this machine's position in --workers.")
@click.option("--mixed-precision/--no-mixed-precision", default=None, help="float16 compute (GPUs only).")
@verbose_option
@friendly_errors
def train(data, resume, config_path, out, overwrite, verbose, cluster, task_index, **flags):
    """Train a real-vs-fake classifier (frozen backbone, then fine-tuning) and write a run folder.

    On several machines: the same command on each, with --workers (all of them, the chief first) and its own
    --task-index; only the chief (index 0) writes the run folder.
    """
    from fakedetect.config import load_config, resolve
    from fakedetect.data.archive import resolve_data
    from fakedetect.errors import DataError
    from fakedetect.training import preflight, resume_training
    from fakedetect.training import train as run_training

    if cluster is not None or task_index is not None:
        from fakedetect.training.cluster import workers_tf_config

        if cluster is None or task_index is None:
            raise click.UsageError("--workers and --task-index go together")
        os.environ["TF_CONFIG"] = workers_tf_config(cluster, task_index)
        if not resume:
            flags["strategy"] = "multi-worker"
    if resume is not None:
        if data or config_path or out or any(v is not None for v in flags.values()):
            raise click.UsageError("--resume takes no other option (but --workers/--task-index): the run folder "
                                   "holds its config and data")
        tensorflow(verbose)
        resume_training(resume)
        return
    cfg = load_config(config_path, flags)
    data = list(data) or None  # None: the config's data list
    if data is None and not cfg.data:
        raise click.UsageError("--data is required (or a config with a `data:` list, or --resume RUN_DIR)")
    if data and cfg.data:
        echo(f"--data replaces the config's data list ({len(cfg.data)} source(s)): equal weights, no per-source cap")
        cfg.data = [str(d) for d in data]  # config.yaml in the run folder then says what was trained on
    preflight(cfg, out, overwrite)  # weights file, unfreeze target, output folder: before any slow work
    for src in data or cfg.data:  # an archive is extracted (once) here, with a message; training gets the path
        try:
            resolve_data(src["path"] if isinstance(src, dict) else src)
        except DataError as e:
            if data:
                raise
            raise DataError(f"{e} (the config's data paths are relative to the folder you run fakedetect from: "
                            f"{Path.cwd()})") from e
    cfg = resolve(cfg)  # the config is final here (the flags applied): the size it trains at
    echo(f"backbone {cfg.backbone}, input {cfg.framing.describe()} ({cfg.weights} weights), batch {cfg.batch_size}, "
          f"epochs {cfg.epochs_frozen}+{cfg.epochs_finetune}" + (f", recipe {config_path}" if config_path else ""))
    tensorflow(verbose)
    run_training(data[0] if data and len(data) == 1 else data, cfg, out, overwrite=overwrite)


@main.command()
@click.option("--data", type=click.Path(path_type=Path),
              help="Folder or archive of real/ and fake/ images (default: $FAKEDETECT_DATA, else CIFAKE's "
                   "archive in ../shared/data, else a generated synthetic set).")
@click.option("--out", type=OUT_DIR, help="Run folder (default: runs/demo-<time>).")
@click.option("--max-per-class", type=click.IntRange(min=2), default=DEMO_PER_CLASS, show_default=True,
              help="Training images per class (the demo is meant to take minutes).")
@click.option("--serve/--no-serve", "start_server", default=True, show_default=True,
              help="Start the web app at the end.")
@click.option("--port", type=PORT, default=8000, show_default=True)
@verbose_option
@click.pass_context
@friendly_errors
def demo(ctx, data, out, max_per_class, start_server, port, verbose):
    """The main job end to end: data, inspection, training, evaluation on held-out images, web app."""
    from fakedetect.demo import run_demo

    if start_server:
        check_port("127.0.0.1", port)
    tensorflow(verbose)
    result = run_demo(data, out, max_per_class)
    if start_server:
        echo(f"== 4/4 web app: http://127.0.0.1:{port}/  (Ctrl-C to stop)")
        ctx.invoke(serve, run_dir=result.run_dir, host="127.0.0.1", port=port, workers=1, dev=False, verbose=verbose)
