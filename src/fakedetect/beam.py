"""Scoring at archive scale on Apache Beam (``fakedetect sweep``): the verdicts of ``predict``, from a pipeline that
runs unchanged on the DirectRunner, Dataflow, Flink or Spark.

The pipeline::

    patterns -> MatchAll -> each path once (overlapping globs) -> read, check, decode, frame  --bad--> skipped
             -> RunInference(FakedetectModelHandler).with_exception_handling()               --failed--> skipped
             -> rows -> OUT/verdicts-00000-of-0000N.csv      (predict's columns, the engine and the run's id)
    skipped         -> OUT/skipped-00000-of-0000N.csv       (path, reason)
    counts          -> OUT/summary.json and Beam metrics (namespace "fakedetect")

Every step is Beam's own (matching, batching, one model per worker process, sharded writes through temporary
files): fakedetect adds the per-file checks, the decoding and the :class:`FakedetectModelHandler`, which scores
through the one scoring call (:meth:`fakedetect.run.Run.score`) with the engine asked for, so that each column
means what it means in ``predict``.

Apache Beam is an optional extra (``pip install -e ".[beam]"``): only this module imports it.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fakedetect.atomic import safe_cell
from fakedetect.errors import ConfigError, DataError, OutputExistsError, RunError
from fakedetect.framing import Framing
from fakedetect.runfolder import CARD_FILE, DOMAIN_FILE, MODEL_FILE

log = logging.getLogger(__name__)

_QUIET = logging.NullHandler()  # Beam's import warns on the root logger about clients of clouds not installed
logging.getLogger().addHandler(_QUIET)
try:  # the [beam] extra; without it this module imports, and require_beam() says what to install
    import apache_beam as beam
    from apache_beam.metrics import Metrics
    from apache_beam.ml.inference.base import ModelHandler as _ModelHandler

    _DoFn = beam.DoFn
except ImportError:  # pragma: no cover - exercised by a test that hides the package
    beam, Metrics, _ModelHandler, _DoFn = None, None, object, object
finally:
    logging.getLogger().removeHandler(_QUIET)

#: ``--runner`` names and the Beam runner each means (any other name is passed to Beam as it is).
RUNNERS = {"direct": "DirectRunner", "dataflow": "DataflowRunner", "flink": "FlinkRunner", "spark": "SparkRunner",
           "portable": "PortableRunner", "prism": "PrismRunner"}

#: The columns of every verdicts shard: ``predict``'s, then the run's id (the first 16 hex digits of the SHA-256
#: of its model.keras).
COLUMNS = ("path", "prob_fake", "prob_real", "label", "in_domain", "domain_distance", "engine", "run_id")
SKIPPED_COLUMNS = ("path", "reason")
#: The files of an output folder (``--out``): shards of the verdicts and of the skipped files, and the summary. A
#: folder of its own: Beam's text sink deletes whatever matches ``PREFIX-*-of-N.csv`` before it writes, which a bare
#: out would let reach another sweep's files (``results/day-2-...`` for ``results/day``).
VERDICTS, SKIPPED, SUMMARY = "verdicts", "skipped", "summary.json"
NAMESPACE = "fakedetect"
INSTALL_HINT = 'Apache Beam is not installed: pip install -e ".[beam]" (or pip install "fakedetect[beam]")'


def require_beam():
    """The ``apache_beam`` module, or a one-line message that says what to install."""
    if beam is None:
        raise ConfigError(INSTALL_HINT)
    return beam


# --- the command line: patterns and Beam's own options ---------------------------------------------------------------


def split_args(tokens: Sequence[str]) -> tuple[list[str], list[str]]:
    """(patterns, Beam options) of the words a command line left to Beam: options that Beam's own parser knows
    (``--project p`` or ``--project=p``; flags such as ``--save_main_session``) and the rest as patterns.

    Raises:
        ConfigError: an option that neither fakedetect nor Beam knows.
    """
    require_beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    parser = _Parser(allow_abbrev=False, add_help=False)
    for cls in _subclasses(PipelineOptions):
        try:
            cls._add_argparse_args(parser)
        except argparse.ArgumentError:  # an option declared by two classes
            pass
    parser.add_argument("patterns", nargs="*")
    known, unknown = parser.parse_known_intermixed_args(list(tokens))
    bad = [t for t in unknown if t.startswith("-")]
    if bad:
        raise ConfigError(f"unknown option {bad[0]} (neither fakedetect's nor Apache Beam's)")
    patterns = list(known.patterns) + unknown
    options, left = [], list(patterns)
    for t in tokens:  # the words in order, less the patterns (each taken once)
        if t in left and not t.startswith("-"):
            left.remove(t)
        else:
            options.append(t)
    return patterns, options


class _Parser(argparse.ArgumentParser):
    """Beam's options parsed with a one-line error (argparse would print every option's usage and exit)."""

    def error(self, message):
        raise ConfigError(f"Beam option: {message}")


def _subclasses(cls) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return list(dict.fromkeys(out))


def pipeline_options(runner: str, beam_args: Sequence[str]):
    """Beam's PipelineOptions from its own command-line options, with the runner named by ``--runner``."""
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions(list(beam_args), runner=RUNNERS.get(runner, runner))


# --- file names ---------------------------------------------------------------------------------------------------


def _is_remote(path: str) -> bool:
    return "://" in str(path)


def _wildcard(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def as_pattern(item: str) -> str:
    """A path as a Beam file pattern: a local folder becomes every file under it (``folder/**``)."""
    item = str(item)
    if not _is_remote(item) and Path(item).exists():  # a local name as it is, its [ * ? included
        literal = re.sub(r"([\[*?])", r"[\1]", str(Path(item)))
        return literal + "/**" if Path(item).is_dir() else literal
    return item.rstrip("/") + "/**" if _is_remote(item) and item.endswith("/") else item


def _hidden(path: str, pattern: str) -> bool:
    """A file ``predict`` would not list in a folder: a name under the pattern's fixed part starting with '.'."""
    if not _wildcard(pattern):
        return False
    fixed = pattern[:min(pattern.index(c) for c in "*?[" if c in pattern)]
    root = fixed.rsplit("/", 1)[0] + "/" if "/" in fixed else ""
    if any(part.startswith(".") for part in pattern[len(root):].split("/")):
        return False  # the pattern names hidden files itself ('dir/.x*')
    rel = path[len(root):] if path.startswith(root) else os.path.basename(path)
    return any(part.startswith(".") for part in rel.split("/") if part)


def _same_file(path: str) -> str:
    """One key for every spelling of a local file ('images/a.jpg', './images/a.jpg', '/abs/images/a.jpg')."""
    return path if _is_remote(path) else os.path.abspath(path)


def check_patterns(patterns: Sequence[str]) -> None:
    """Each pattern matches at least one file (Beam's match, limited to one), before any worker starts.

    Raises:
        DataError: no pattern given, or one that matches nothing.
    """
    from apache_beam.io.filesystems import FileSystems

    if not patterns:
        raise DataError("no files to score: give a folder, a file or a pattern ('images/**', 'gs://bucket/*.jpg')")
    for pattern in patterns:
        try:
            found = FileSystems.match([pattern], limits=[1])[0].metadata_list
        except Exception as e:  # noqa: BLE001 - Beam raises its own BeamIOError, or an import error of an extra
            raise DataError(f"cannot list {pattern}: {str(e).splitlines()[0]}") from e
        if not found:
            raise DataError(f"no file matches {pattern}")


def _in(out: str, name: str) -> str:
    return f"{out.rstrip('/')}/{name}" if _is_remote(out) else str(Path(out) / name)


def output_files(out: str) -> list[str]:
    """The files an earlier sweep wrote in ``out`` (shards of verdicts and of skipped files, the summary)."""
    from apache_beam.io.filesystems import FileSystems

    found = []
    for pattern in (_in(out, "*-of-*.csv"), _in(out, SUMMARY)):
        try:
            found += [m.path for m in FileSystems.match([pattern])[0].metadata_list]
        except Exception:  # noqa: BLE001 - nothing there (some filesystems raise for a missing folder)
            pass
    return sorted({f for f in found if _ours(f, out)})


def _ours(path: str, out: str, kind: str = "") -> bool:
    """``path`` is a file a sweep writes in ``out``; ``kind`` :data:`VERDICTS` or :data:`SKIPPED` for the shards of
    one output only."""
    kinds = re.escape(kind) if kind else f"({VERDICTS}|{SKIPPED})"
    shard = re.escape(_in(out, "@")).replace("@", kinds + r"-\d{5,}-of-\d{5,}\.csv")
    path = path if _is_remote(path) else str(Path(path))
    return bool(re.fullmatch(shard, path)) or (not kind and path == _in(out, SUMMARY))


def plan_output(out: str, overwrite: bool) -> None:
    """Refuses an output folder that holds a sweep's files unless ``overwrite``, which removes them first (a new run
    may write fewer shards than the old one did); makes a local folder."""
    from apache_beam.io.filesystems import FileSystems

    old = output_files(out)
    if old and not overwrite:
        raise OutputExistsError(f"{out} already holds a sweep's output ({len(old)} file(s), e.g. {old[0]}); "
                                "pass --overwrite to replace it")
    if old:
        FileSystems.delete(old)
    if not _is_remote(out):
        Path(out).mkdir(parents=True, exist_ok=True)


# --- the run on a worker ----------------------------------------------------------------------------------------------


def stage_run(run: str) -> Path:
    """The run as a local folder: a local run as it is; a run on a Beam filesystem (``gs://``, ``s3://``, ...) copied
    once to the cache (``$FAKEDETECT_CACHE/beam-runs/``), keyed by its path and its files' sizes and times, with
    its card, domain model and any ONNX graph it holds (``engine/``).

    Raises:
        RunError: the run's model or card cannot be read.
    """
    if not _is_remote(run):
        return Path(run)
    from apache_beam.io.filesystems import FileSystems

    from fakedetect.paths import cache_dir

    def join(*parts):
        return FileSystems.join(run.rstrip("/"), *parts)

    try:
        model = FileSystems.match([join(MODEL_FILE)])[0].metadata_list
    except Exception as e:  # noqa: BLE001
        raise RunError(f"cannot read the run at {run}: {str(e).splitlines()[0]}") from e
    if not model:
        raise RunError(f"{run} holds no trained model (missing {MODEL_FILE})")
    stamp = [run]
    for name in (MODEL_FILE, CARD_FILE, DOMAIN_FILE):  # a refitted domain model rewrites the card, not the model
        try:
            m = FileSystems.match([join(name)])[0].metadata_list
        except Exception:  # noqa: BLE001
            m = []
        stamp += [f"{name}:{m[0].size_in_bytes}:{m[0].last_updated_in_seconds}" if m else f"{name}:-"]
    key = hashlib.sha256("|".join(stamp).encode()).hexdigest()
    dest = cache_dir() / "beam-runs" / key[:16]
    if (dest / MODEL_FILE).is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".staging-"))
    try:
        wanted = [MODEL_FILE, CARD_FILE, DOMAIN_FILE]
        try:
            graphs = FileSystems.match([join("engine", "*.onnx")])[0].metadata_list
        except Exception:  # noqa: BLE001 - no graph cached beside the run
            graphs = []
        wanted += ["engine/" + m.path.rsplit("/", 1)[-1] for m in graphs]
        for name in wanted:
            try:
                src = FileSystems.open(join(*name.split("/")), compression_type="uncompressed")
            except Exception:  # noqa: BLE001
                if name in (MODEL_FILE, CARD_FILE):
                    raise RunError(f"{run} holds no trained model (cannot read {name})") from None
                continue  # the domain model is optional
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            with src, open(tmp / name, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        try:
            tmp.rename(dest)
        except OSError:  # another process of this machine staged it first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


@dataclass(frozen=True)
class RunFacts:
    """What the pipeline is built from, read once by the launcher."""
    run: str  # the run as given (a local folder, or a Beam filesystem path)
    framing: Framing
    threshold: float
    run_id: str  # the first 16 hex digits of the SHA-256 of its model.keras


def run_facts(run: str) -> RunFacts:
    from fakedetect.engine import model_hash
    from fakedetect.run import check_run_dir

    local = stage_run(run)
    card = check_run_dir(local)
    return RunFacts(run if _is_remote(run) else str(Path(run).resolve()), card.framing, float(card.threshold),
                    model_hash(local)[:16])


# --- the steps --------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _framer(fr: Framing):
    """The pipeline's framing (uint8 pixels -> the model's input) as a graph, made once per process: eager calls
    per image would cost more than the framing (0.9 ms an image of CIFAKE's through tf.function's dispatch, 0.6 ms
    as called here)."""
    import tensorflow as tf

    from fakedetect.data.pipeline import frame

    def framed(x):
        return frame(x, fr)

    # a concrete function: half the call cost of a tf.function's dispatch, on every image
    return tf.function(framed).get_concrete_function(tf.TensorSpec([None, None, 3], tf.uint8))


def read_and_frame(path: str, size: int | None, fr: Framing) -> tuple[np.ndarray | None, str | None]:
    """(the file framed for the model, None) or (None, why it is skipped): ``predict``'s per-file checks (size,
    a regular file, Pillow's full decode with its format and pixel limits, TensorFlow's decoder where the pipeline
    uses it) on the bytes read through Beam's filesystems, then the pipeline's own decode (TensorFlow's verdict on
    the file: one decode, where ``predict`` decodes twice) and framing."""
    from apache_beam.io.filesystems import FileSystems

    from fakedetect.data.checks import (
        TF_REJECTED,
        ImageInfo,
        check_bytes,
        rgb_pixels,
        size_error,
        stat_error,
        tf_rejected,
    )
    from fakedetect.data.pipeline import decode_now

    why = stat_error(path)[0] if not _is_remote(path) else (size_error(size) if size is not None else None)
    if why is not None:
        return None, why
    try:
        with FileSystems.open(path, compression_type="uncompressed") as f:
            data = f.read()
    except OSError as e:
        return None, f"cannot read: {e.strerror or e}"  # predict's words
    except Exception as e:  # noqa: BLE001 - any filesystem's read error
        return None, f"cannot read: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    info = check_bytes(data, ImageInfo(path))  # TensorFlow's verdict on the bytes: its decode below, done once
    if info.error is not None:
        return None, info.error
    import tensorflow as tf

    try:
        img = decode_now(data) if info.tf_decodable else tf.constant(rgb_pixels(io.BytesIO(data)))
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        return None, tf_rejected(e)
    except Exception:  # noqa: BLE001 - predict's tf.data drops such a file as undecodable; so does the sweep
        return None, TF_REJECTED
    try:
        return _framer(fr)(img).numpy(), None
    except Exception:  # noqa: BLE001
        return None, TF_REJECTED


def _row_line(row: dict) -> str:
    return _csv_line([safe_cell(row["path"]), *[_cell(row[c]) for c in COLUMNS[1:]]])


def _skipped_line(item: tuple[str, str]) -> str:
    return _csv_line([safe_cell(item[0]), safe_cell(item[1])])


def _cell(v) -> str:
    """A value as pandas' ``to_csv`` writes it in ``predict``'s CSV (floats in full, None empty)."""
    return "" if v is None else repr(v) if isinstance(v, float) else str(v)


def _csv_line(cells: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)  # a cell with a line break is quoted
    return buf.getvalue()[:-1]


def _error_line(exc) -> str:
    """'Type: message' of what RunInference's dead-letter output holds: an exception, or Beam's (type, repr,
    traceback lines) of one."""
    if isinstance(exc, BaseException):
        text = f"{type(exc).__name__}: {exc}"
    elif isinstance(exc, tuple) and len(exc) == 3 and isinstance(exc[2], list) and exc[2]:
        text = str(exc[2][-1])
    else:
        text = str(exc)
    return (text.strip().splitlines() or ["unknown error"])[0]


def _tally(counts: Iterable[dict]) -> dict:
    out = {"scored": 0, "skipped": 0, "fake": 0, "out_of_domain": 0}
    for c in counts:
        for k, v in c.items():
            out[k] += v
    return out


class ReadAndFrame(_DoFn):
    """One file: (path, framed pixels), or (path, reason) to the ``skipped`` output."""

    def __init__(self, fr: Framing):
        super().__init__()
        self.fr = fr
        self.skipped = Metrics.counter(NAMESPACE, "skipped")

    def process(self, item):
        path, size = item
        framed, why = read_and_frame(path, size, self.fr)
        if why is not None:
            self.skipped.inc()
            yield beam.pvalue.TaggedOutput("skipped", (path, why))
        else:
            yield path, framed

class FakedetectModelHandler(_ModelHandler):
    """Scores (path, framed image) pairs with a fakedetect run through :meth:`fakedetect.run.Run.score`; each
    prediction is ``predict``'s row of the file (a dict of :data:`COLUMNS`).

    The run may sit on any Beam filesystem: a worker copies it to its local disk once (:func:`stage_run`).
    Beam loads one model per worker process and shares it among the process's threads.
    """

    def __init__(self, facts: RunFacts, engine: str = "auto", batch_size: int = 64, threads: int | None = None,
                 tta: bool = False):
        # in crop mode a batch of images is K times as many crops, as in predict
        super().__init__(min_batch_size=1, max_batch_size=max(1, batch_size // facts.framing.views))
        self.facts, self.engine, self.threads, self.tta = facts, engine, threads, tta
        self.scored = 0

    def load_model(self):
        from fakedetect.quiet import import_tensorflow
        from fakedetect.run import load_run

        import_tensorflow(verbose=False)
        return load_run(stage_run(self.facts.run), self.engine, self.threads)

    def run_inference(self, batch, model, inference_args=None):
        names = [p for p, _ in batch]
        scores = model.score(framed=np.stack([x for _, x in batch]), names=names, tta=self.tta)
        if len(scores.names) != len(names):  # the scoring call drops nothing it is given framed
            raise RuntimeError("the scoring call returned fewer rows than it was given")
        table = scores.table()
        self.scored += len(table)
        if self.scored // 1000 > (self.scored - len(table)) // 1000:
            log.info(f"  scored {self.scored} images (this worker process)")
        return [dict(zip(COLUMNS, (*r, model.engine, self.facts.run_id), strict=True))
                for r in table.itertuples(index=False, name=None)]

    def get_num_bytes(self, batch) -> int:
        return sum(x.nbytes for _, x in batch)

    def get_metrics_namespace(self) -> str:
        return NAMESPACE


def model_handler(facts: RunFacts, engine: str = "auto", batch_size: int = 64, threads: int | None = None,
                  tta: bool = False):
    """The :class:`FakedetectModelHandler` for ``RunInference`` (for pipelines of one's own)."""
    require_beam()
    return FakedetectModelHandler(facts, engine, batch_size, threads, tta)


def build(p, facts: RunFacts, patterns: Sequence[str], out: str, engine: str = "auto", batch_size: int = 64,
          threads: int | None = None, tta: bool = False, num_shards: int = 0) -> None:
    """Adds the sweep to pipeline ``p`` (see the module's docstring); ``num_shards`` 0 lets the runner choose."""
    from apache_beam.io import fileio
    from apache_beam.ml.inference.base import RunInference

    patterns = [as_pattern(x) for x in patterns]
    counters = {k: Metrics.counter(NAMESPACE, k) for k in ("scored", "fake", "out_of_domain", "skipped")}

    def unique(item):  # (file, [(pattern index, path, size)...]) -> (path, size): a file matched by several
        _, found = item  # patterns, once, spelt as the first pattern that matched it spells it
        _, path, size = min(found)
        return path, size

    matched = [
        p | f"Pattern {i}" >> beam.Create([pattern])
        | f"Match {i}" >> fileio.MatchAll()
        | f"Not hidden {i}" >> beam.Filter(lambda m, pat=pattern: not _hidden(m.path, pat))
        | f"Tag {i}" >> beam.Map(lambda m, i=i: (_same_file(m.path), (i, m.path, m.size_in_bytes)))
        for i, pattern in enumerate(patterns)]
    files = (matched | "All patterns" >> beam.Flatten()
             | "Once each" >> beam.GroupByKey()
             | "Path and size" >> beam.Map(unique))
    framed = files | "Read, check, frame" >> beam.ParDo(ReadAndFrame(facts.framing)).with_outputs(
        "skipped", main="framed")
    scored, dlq = framed.framed | "Score" >> RunInference(
        FakedetectModelHandler(facts, engine, batch_size, threads, tta)).with_exception_handling()

    def failed(item):  # (failed batch, exception) -> (path, reason) for each file of the batch
        batch, exc = item
        counters["skipped"].inc(len(batch))
        reason = f"scoring failed: {_error_line(exc)}"
        return [(path, reason) for path, _ in batch]

    def count(row):
        counters["scored"].inc()
        counters["fake"].inc(row["label"] == "fake")
        counters["out_of_domain"].inc(row["in_domain"] is False)
        return row

    rows = scored | "Count" >> beam.Map(count)
    skipped = ((framed.skipped, dlq.failed_inferences | "Failed batches" >> beam.FlatMap(failed))
               | "All skipped" >> beam.Flatten())
    (rows | "Rows as CSV" >> beam.Map(_row_line)
     | "Write verdicts" >> beam.io.WriteToText(_in(out, VERDICTS), ".csv", num_shards=num_shards,
                                               header=",".join(COLUMNS)))
    (skipped | "Skipped as CSV" >> beam.Map(_skipped_line)
     | "Write skipped" >> beam.io.WriteToText(_in(out, SKIPPED), ".csv", num_shards=num_shards,
                                              header=",".join(SKIPPED_COLUMNS)))
    tallies = ((rows | "Tally rows" >> beam.Map(
        lambda r: {"scored": 1, "fake": int(r["label"] == "fake"), "out_of_domain": int(r["in_domain"] is False)}),
        skipped | "Tally skipped" >> beam.Map(lambda _: {"skipped": 1}))
        | "All tallies" >> beam.Flatten() | "Sum" >> beam.CombineGlobally(_tally))
    meta = {"run": facts.run, "run_id": facts.run_id, "threshold": facts.threshold, "engine_asked": engine,
            "patterns": list(patterns), "verdicts": _in(out, f"{VERDICTS}-SSSSS-of-NNNNN.csv"),
            "skipped": _in(out, f"{SKIPPED}-SSSSS-of-NNNNN.csv")}
    (tallies | "Summary" >> beam.Map(lambda t: json.dumps({**meta, "counts": t}, indent=2))
     | "Write summary" >> beam.io.WriteToText(_in(out, SUMMARY), num_shards=1, shard_name_template=""))


def read_summary(out: str) -> dict | None:
    """The summary a finished sweep wrote at ``out``, or None."""
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(_in(out, SUMMARY), compression_type="uncompressed") as f:
            return json.loads(f.read().decode())
    except Exception:  # noqa: BLE001 - not there (yet)
        return None


def read_rows(out: str):
    """The verdicts a sweep wrote at ``out`` as one pandas table (every shard; for tests and small sweeps)."""
    import pandas as pd
    from apache_beam.io.filesystems import FileSystems

    shards = sorted(m.path for m in FileSystems.match([_in(out, f"{VERDICTS}-*-of-*.csv")])[0].metadata_list
                    if _ours(m.path, out, VERDICTS))
    frames = [pd.read_csv(FileSystems.open(s, compression_type="uncompressed"), keep_default_na=False,
                          dtype={"path": str}) for s in shards]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def read_skipped(out: str) -> list[tuple[str, str]]:
    import pandas as pd
    from apache_beam.io.filesystems import FileSystems

    shards = sorted(m.path for m in FileSystems.match([_in(out, f"{SKIPPED}-*-of-*.csv")])[0].metadata_list
                    if _ours(m.path, out, SKIPPED))
    out = []
    for s in shards:
        t = pd.read_csv(FileSystems.open(s, compression_type="uncompressed"), keep_default_na=False, dtype=str)
        out += list(zip(t["path"], t["reason"], strict=True))
    return out


@dataclass
class SweepResult:
    state: str  # the runner's final state (DONE), or RUNNING for a detached job
    job: str | None  # the runner's job id, where it has one (Dataflow)
    counts: dict | None  # from Beam's metrics (None where the runner reports none)
    summary: dict | None  # what the pipeline wrote itself


def sweep(run: str, patterns: Sequence[str], out: str, runner: str = "direct", beam_args: Sequence[str] = (),
          engine: str = "auto", batch_size: int = 64, threads: int | None = None, tta: bool = False,
          overwrite: bool = False, detach: bool = False, num_shards: int = 0) -> SweepResult:
    """Scores every file matched by ``patterns`` with ``run`` on Beam; see the module's docstring.

    Raises:
        ConfigError: Beam is not installed, or an option it does not know.
        RunError: the run cannot be read.
        DataError: a pattern matches nothing.
        OutputExistsError: ``out`` holds a sweep's output and ``overwrite`` is False.
    """
    require_beam()
    from apache_beam.metrics.metric import MetricsFilter

    options = pipeline_options(runner, beam_args)
    local = [x for x in (run, *patterns, out) if not _is_remote(x)]
    if RUNNERS.get(runner, runner) not in ("DirectRunner", "PrismRunner") and local:
        log.warning(f"warning: {local[0]} is a local path: every worker of the {runner} runner must read it at the "
                    "same path (a shared mount), or the job fails there; on Dataflow use gs:// paths")
    facts = run_facts(run)  # the run is read (and checked) before any worker starts
    check_patterns([as_pattern(x) for x in patterns])
    try:
        p = beam.Pipeline(options=options)  # an unknown runner is refused here, before old output is removed
    except ValueError as e:
        raise ConfigError(f"Beam refused the pipeline: {str(e).splitlines()[0]}") from e
    build(p, facts, patterns, out, engine, batch_size, threads, tta, num_shards)
    plan_output(out, overwrite)
    try:
        result = p.run()
    except ValueError as e:  # options the runner checks when the job is submitted (a Dataflow temp location...)
        raise ConfigError(f"Beam refused the pipeline: {str(e).splitlines()[0]}") from e
    job = result.job_id() if callable(getattr(result, "job_id", None)) else None
    if detach:
        return SweepResult(str(result.state), job, None, None)
    state = result.wait_until_finish()
    counts = None
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
        counts = {}
        for c in found:
            value = c.committed if c.committed is not None else c.attempted
            counts[c.key.metric.name] = counts.get(c.key.metric.name, 0) + (value or 0)
    except Exception:  # noqa: BLE001 - a runner without metrics
        counts = None
    return SweepResult(str(state), job, counts, read_summary(out))
