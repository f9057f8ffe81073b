"""Command line: thin wrappers that parse, call the library, and present. No TensorFlow import at start-up.

Options are validated when they are parsed (click types and ranges), so a wrong value is a one-line usage error
before any work. The library's own errors (:mod:`fakedetect.errors`) become one line and exit status 1;
anything else is a bug: its traceback is shown with a line asking to report it (exit status 70).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
from pathlib import Path

import click

from fakedetect import __version__
from fakedetect.config import TrainConfig
from fakedetect.errors import FakedetectError

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


def friendly_errors(fn):
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


def echo(msg: str) -> None:
    click.echo(msg)


class _EchoHandler(logging.Handler):
    """Shows the library's messages (logger ``fakedetect``) as plain lines on the command's output."""

    def __init__(self, err: bool):
        super().__init__()
        self.err = err

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=self.err)


def show_library_messages(err: bool = False) -> None:
    """Routes the ``fakedetect`` logger to this invocation's output, INFO and up, through one handler (stderr with
    ``err``: for commands whose stdout is data). The CLI owns the output: nothing is passed on to handlers that
    another library may have put on the root logger (TensorFlow's stack does, once training starts), so no line is
    printed twice. Undone when the invocation ends (see :func:`main`)."""
    logger = logging.getLogger("fakedetect")
    handler = next((h for h in logger.handlers if isinstance(h, _EchoHandler)), None)
    if handler is None:
        logger.addHandler(_EchoHandler(err))
    else:
        handler.err = err
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _hide_library_messages() -> None:
    logger = logging.getLogger("fakedetect")
    for h in [h for h in logger.handlers if isinstance(h, _EchoHandler)]:
        logger.removeHandler(h)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def tensorflow(verbose: int = 0) -> None:
    """Imports TensorFlow before a command needs it; its start-up notices are shown only with --verbose."""
    from fakedetect.quiet import import_tensorflow

    import_tensorflow(verbose=verbose > 0)


def engine_option(fn):
    """--engine: what computes the network when scoring (default $FAKEDETECT_ENGINE, else auto)."""
    from fakedetect.engine import ENGINES

    return click.option(
        "--engine", type=click.Choice(ENGINES), default=lambda: os.environ.get("FAKEDETECT_ENGINE") or "auto",
        show_default="auto, or $FAKEDETECT_ENGINE",
        help="tensorflow, onnxruntime (the run's ONNX graph, made once and cached beside the run), or auto: "
             "onnxruntime when installed and the graph can be had, else tensorflow. The scores agree within "
             "1e-5.")(fn)


def prepare_graph(run_dir: Path, engine: str, verbose: int = 0, tta: bool = False) -> str:
    """Resolves ``auto`` for a local run; for ONNX Runtime, makes the run's graph now (once, under a lock), before
    workers start (gunicorn's, Beam's), each of which would otherwise make its own. Returns the engine."""
    from fakedetect.card import ModelCard
    from fakedetect.engine import OnnxEngine, choose_engine

    fr = ModelCard.read(run_dir).framing
    engine = choose_engine(engine, run_dir, fr)
    if engine == "onnxruntime" and OnnxEngine(run_dir)._find(tta, fr) is None:
        tensorflow(verbose)
        from fakedetect.run import load_run

        echo(f"fakedetect: making the ONNX graph of {run_dir} (once per model)")
        load_run(run_dir, "onnxruntime").onnx.graph(tta, fr)  # the Keras model loads to convert it
    return engine


def verbose_option(fn):
    return click.option("--verbose", "-v", count=True, help="Show TensorFlow's own log lines (-v).")(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="fakedetect")
@click.option("--debug", is_flag=True, help="Show the full traceback of every error, expected ones too.")
@click.pass_context
def main(ctx, debug):
    """fakedetect: train, evaluate and serve detectors of AI-generated images.

    Labels: real = 0, fake = 1; models output the probability that an image is fake.
    """
    show_library_messages()
    ctx.call_on_close(_hide_library_messages)


def check_run(run_dir: Path) -> None:
    """A cheap check, before TensorFlow is imported, that RUN_DIR holds a trained model."""
    from fakedetect.run import check_run_dir

    check_run_dir(run_dir)

