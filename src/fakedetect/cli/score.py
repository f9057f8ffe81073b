"""Commands that score with a trained run: evaluate, robustness, predict, export."""

from __future__ import annotations

from pathlib import Path

import click

from fakedetect.atomic import escape_controls
from fakedetect.cli.main import (
    NON_NEGATIVE,
    OUT_DIR,
    OUT_FILE,
    POSITIVE,
    check_run,
    echo,
    engine_option,
    friendly_errors,
    main,
    prepare_graph,
    show_library_messages,
    tensorflow,
    verbose_option,
)
from fakedetect.data.transforms import PERTURBATIONS
from fakedetect.errors import OutputExistsError
from fakedetect.runfolder import (
    CROSS_CSV,
    CROSS_MD,
    CROSS_PLOT,
    METRICS_FILE,
    REPORT_FILE,
    ROBUSTNESS_CSV,
    ROBUSTNESS_PLOT,
)


def _before_scoring(run_dir: Path, data: Path, out: Path | None, overwrite: bool, verbose: int) -> Path:
    """The checks of a command that scores a data set (run, output folder, data; in that order, before any slow
    work), then TensorFlow; returns the data folder (an archive extracted once)."""
    from fakedetect.data.archive import resolve_data
    from fakedetect.evaluation.evaluate import plan_out_dir

    check_run(run_dir)
    if out is not None:
        plan_out_dir(run_dir, data, out, overwrite)
    data = resolve_data(data)
    tensorflow(verbose)
    return data


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", required=True, multiple=True, type=click.Path(path_type=Path),
              help="Test folder (or archive): real/ and fake/, or a folder with a test/ split. Repeat it for a "
                   "cross-dataset table (see `fakedetect compare`).")
@click.option("--out", type=OUT_DIR, help="Output folder (default: RUN_DIR/eval-<data>-<time>).")
@click.option("--overwrite", is_flag=True, help="Replace the files of an existing output folder.")
@click.option("--batch-size", type=POSITIVE, default=64, show_default=True)
@click.option("--tta", is_flag=True,
              help="Test-time augmentation: score each image with its mirror image too (mean logit; twice the "
                   "compute).")
@click.option("--max-per-class", type=click.IntRange(min=1),
              help="With several --data: score at most N images per class of each (a fixed-seed subset).")
@engine_option
@verbose_option
@friendly_errors
def evaluate(run_dir, data, out, overwrite, batch_size, tta, max_per_class, engine, verbose):
    """Score RUN_DIR's model on a test folder: metrics.json, predictions.csv, plots, report.html.

    With several --data: one cross-dataset table of the run on every set (cross.csv, cross.md, cross.png,
    report.html)."""
    from fakedetect.evaluation.evaluate import evaluate as run_eval
    from fakedetect.evaluation.evaluate import summary_table

    if len(data) > 1:
        if tta:
            raise click.UsageError("--tta scores one test set: give one --data")
        _cross([run_dir], data, out or run_dir / f"cross-{_now()}", overwrite, batch_size, max_per_class, verbose,
               engine)
        return
    if max_per_class is not None:
        raise click.UsageError("--max-per-class is for several --data (a cross-dataset table); one test set is "
                               "scored whole")
    data = _before_scoring(run_dir, data[0], out, overwrite, verbose)
    res = run_eval(run_dir, data, out, overwrite, batch_size, tta=tta, engine=engine)
    echo("")
    echo(summary_table(res.metrics).to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="undefined"))
    cm = res.metrics["confusion_matrix"]
    echo(f"\nconfusion matrix: tn {cm['tn']}  fp {cm['fp']}  fn {cm['fn']}  tp {cm['tp']}")
    echo(f"report: {res.out_dir / REPORT_FILE}")
    echo(f"metrics: {res.out_dir / METRICS_FILE}")


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", required=True, multiple=True, type=click.Path(path_type=Path),
              help="A test folder or archive (repeat it: one column per set).")
@click.option("--out", type=OUT_DIR, help="Output folder (default: runs/compare-<time>).")
@click.option("--overwrite", is_flag=True, help="Replace the files of an existing output folder.")
@click.option("--batch-size", type=POSITIVE, default=64, show_default=True)
@click.option("--max-per-class", type=click.IntRange(min=1),
              help="Score at most N images per class of each set (a fixed-seed subset).")
@engine_option
@verbose_option
@friendly_errors
def compare(run_dirs, data, out, overwrite, batch_size, max_per_class, engine, verbose):
    """Score every run on every test set: the cross-dataset table and heatmap (cross.csv, cross.md, cross.png,
    report.html). Images a run trained or validated on are left out of its cells."""
    _cross(list(run_dirs), data, out or Path("runs") / f"compare-{_now()}", overwrite, batch_size, max_per_class,
           verbose, engine)


def _now() -> str:
    import datetime as dt

    return f"{dt.datetime.now():%Y%m%d-%H%M%S}"


def _cross(run_dirs: list[Path], datas, out: Path, overwrite: bool, batch_size: int, max_per_class, verbose,
           engine: str = "tensorflow") -> None:
    """The checks (every run, the output folder, every data set: before any slow work), then the table."""
    from fakedetect.atomic import check_out_dir
    from fakedetect.data.archive import resolve_data, set_name
    from fakedetect.evaluation.cross import cross_scores, long_table, markdown, write_cross

    for r in run_dirs:
        check_run(r)
    check_out_dir(out, overwrite, "output folder")
    folders = [resolve_data(d) for d in datas]
    tensorflow(verbose)
    names = [set_name(d) for d in datas]  # the names given (an archive's, not its extraction folder's)
    cells, sources, _ = cross_scores(run_dirs, folders, batch_size, max_per_class, names, engine)
    write_cross(out, cells, sources, overwrite)
    echo("")
    echo(markdown(long_table(cells, sources)))
    echo(f"table: {out / CROSS_CSV} (and {CROSS_MD})\nheatmap: {out / CROSS_PLOT}\nreport: {out / REPORT_FILE}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Test folder (or archive).")
@click.option("--out", type=OUT_DIR, help="Output folder (default: RUN_DIR/robustness-<data>-<time>).")
@click.option("--overwrite", is_flag=True, help="Replace the files of an existing output folder.")
@click.option("--batch-size", type=POSITIVE, default=64, show_default=True)
@click.option("--only", multiple=True, type=click.Choice([n for n in PERTURBATIONS if n != "clean"]),
              help="Run only these perturbations (repeatable), besides clean.")
@engine_option
@verbose_option
@friendly_errors
def robustness(run_dir, data, out, overwrite, batch_size, only, engine, verbose):
    """Re-score a test set under JPEG, blur, downscaling and same-format re-encoding of both classes."""
    from fakedetect.evaluation.robustness import robustness as run_rob

    data = _before_scoring(run_dir, data, out, overwrite, verbose)
    res = run_rob(run_dir, data, out, overwrite, batch_size, list(only), engine)
    echo("")
    echo(res.table.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="undefined"))
    echo(f"\ntable: {res.out_dir / ROBUSTNESS_CSV}\nplot:  {res.out_dir / ROBUSTNESS_PLOT}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=OUT_FILE, help="Write all rows to FILE.csv or FILE.json.")
@click.option("--batch-size", type=POSITIVE, default=64, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--tta", is_flag=True,
              help="Test-time augmentation: score each image with its mirror image too (mean logit; twice the "
                   "compute).")
@engine_option
@verbose_option
@friendly_errors
def predict(run_dir, paths, out, batch_size, overwrite, tta, engine, verbose):
    """Score images and folders (recursively) with RUN_DIR's model: P(fake), P(real), label.

    Exits with status 1 when no readable image was found.
    """
    import pandas as pd

    from fakedetect.errors import DataError
    from fakedetect.predict import expand_inputs, predict_paths, write_predictions
    from fakedetect.run import load_run

    show_library_messages(err=True)  # stdout carries the scores

    if out is not None:
        if out.suffix.lower() not in (".csv", ".json"):
            raise click.BadParameter("must end in .csv or .json", param_hint="--out")
        if out.exists() and not overwrite:
            raise OutputExistsError(f"{out} already exists; pass --overwrite to replace it")
    check_run(run_dir)
    expand_inputs(list(paths))  # a path that does not exist is an error before the model loads
    tensorflow(verbose)
    run = load_run(run_dir, engine)
    res = predict_paths(run, list(paths), batch_size, tta=tta)
    for path, why in res.unreadable:
        click.echo(click.style(f"unreadable: {escape_controls(path)}: {why}", fg="yellow"), err=True)
    if not len(res.table):
        raise DataError(f"no readable image in {', '.join(map(str, paths))} "
                        f"({len(res.unreadable)} unreadable file(s))")
    if out is not None:
        write_predictions(res, out, run.threshold)
        echo(f"{len(res.table)} image(s) scored, {len(res.unreadable)} unreadable -> {out}")
    else:
        with pd.option_context("display.max_rows", None, "display.max_colwidth", 80):
            shown = res.table.assign(path=res.table["path"].map(escape_controls))  # no terminal escapes
            echo(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        echo(f"threshold {run.threshold:.4f}; {len(res.table)} scored, {len(res.unreadable)} unreadable; "
             f"engine {run.engine}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["saved_model", "tflite", "onnx"]), required=True,
              help="onnx needs the [onnx] extra: pip install -e '.[onnx]'.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="File (tflite, onnx) or folder (saved_model).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@verbose_option
@friendly_errors
def export(run_dir, fmt, out, overwrite, verbose):
    """Export RUN_DIR's model (raw 0..255 pixels in, calibrated P(fake) out) as saved_model, tflite or onnx."""
    from fakedetect.export import export as do_export
    from fakedetect.export import sidecar_path

    check_run(run_dir)
    tensorflow(verbose)
    path = do_export(run_dir, fmt, out, overwrite)
    echo(f"exported {fmt}: {path}")
    echo(f"output: calibrated P(fake) (the run's temperature is built in); threshold in {sidecar_path(path)}")


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("run_dir", metavar="RUN")
@click.argument("patterns", nargs=-1, required=True, metavar="PATTERN... [BEAM OPTIONS]")
@click.option("--out", required=True, metavar="FOLDER",
              help="Output folder (local, or gs://, s3://...): verdicts-00000-of-0000N.csv, skipped-...csv and "
                   "summary.json.")
@click.option("--runner", default="direct", show_default=True,
              help="Where the pipeline runs: direct, dataflow, flink, spark, portable, prism (or a Beam runner's "
                   "class name). Beam's other options follow as Beam writes them (--project, --region, "
                   "--temp_location, --direct_num_workers, ...).")
@click.option("--batch-size", type=POSITIVE, default=64, show_default=True,
              help="Images per model call (at most; Beam batches them).")
@click.option("--threads", type=POSITIVE,
              help="ONNX Runtime's intra-op threads per worker process (default: $FAKEDETECT_ORT_THREADS, else "
                   "the machine's cores).")
@click.option("--tta", is_flag=True, help="Score each image with its mirror image too (as predict --tta).")
@click.option("--num-shards", type=NON_NEGATIVE, default=0, show_default=True,
              help="Shards of the verdicts (0: the runner chooses).")
@click.option("--overwrite", is_flag=True, help="Remove an earlier sweep's files in FOLDER first.")
@click.option("--detach", is_flag=True, help="Submit the job and return (the summary JSON is written when done).")
@engine_option
@verbose_option
@friendly_errors
def sweep(run_dir, patterns, out, runner, batch_size, threads, tta, num_shards, overwrite, detach, engine, verbose):
    """Score a whole collection on Apache Beam: predict's verdicts for every file matched by PATTERN
    ('images/**', a folder, gs://bucket/day/*.jpg), on one machine (--runner direct) or many.

    Needs the [beam] extra: pip install -e ".[beam]". RUN may sit on any filesystem Beam reads (each worker copies
    it once). Files matched by several patterns are scored once; unreadable ones are listed with the reason.
    """
    from fakedetect.beam import SKIPPED, SUMMARY, VERDICTS, _in, _is_remote, split_args
    from fakedetect.beam import sweep as run_sweep

    show_library_messages(err=True)
    if not verbose:  # Beam's runners warn on the root logger about optional modules (psutil, cloud clients)
        import logging

        logging.getLogger().addHandler(logging.NullHandler())
    patterns, beam_args = split_args(patterns)
    if not verbose and not any(a.startswith("--default_sdk_harness_log_level") for a in beam_args):
        beam_args = [*beam_args, "--default_sdk_harness_log_level=WARNING"]  # workers' INFO lines
    if not _is_remote(run_dir):
        check_run(Path(run_dir))
        engine = prepare_graph(Path(run_dir), engine, verbose, tta)
    tensorflow(verbose)
    res = run_sweep(run_dir, patterns, out, runner, beam_args, engine=engine, batch_size=batch_size,
                    threads=threads, tta=tta, overwrite=overwrite, detach=detach, num_shards=num_shards)
    if detach:
        echo(f"submitted ({res.state}{', job ' + res.job if res.job else ''}); the summary will be at "
             f"{_in(out, SUMMARY)}")
        return
    counts = (res.summary or {}).get("counts") or res.counts or {}
    echo(f"{res.state}: {counts.get('scored', 0)} scored ({counts.get('fake', 0)} fake, "
         f"{counts.get('out_of_domain', 0)} out of domain), {counts.get('skipped', 0)} skipped")
    echo(f"verdicts: {_in(out, VERDICTS)}-SSSSS-of-NNNNN.csv\nskipped:  {_in(out, SKIPPED)}-SSSSS-of-NNNNN.csv\n"
         f"summary:  {_in(out, SUMMARY)}")
