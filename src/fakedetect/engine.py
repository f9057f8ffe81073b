"""The scoring engine: TensorFlow, or ONNX Runtime on the run's own graph of the one scoring function.

The ONNX graph is :func:`fakedetect.run.scoring_function` itself, converted by tf2onnx: the same inputs (a batch
of framed images, or B x K crops) and the same outputs (raw P(fake), the domain check's features at every depth,
each view's raw P(fake)), so that calibration, the threshold and the domain model stay in one place
(:meth:`fakedetect.run.Run.score`) whatever computes the network. One graph per variant of the function (test-time
augmentation, the crop count and rule), made on first use with TensorFlow and tf2onnx, under a file lock so that
two processes never convert at once, and cached:

- beside the run, in ``RUN/engine/``, or, when the run folder is read-only, in the cache
  (``$FAKEDETECT_CACHE/engine/``);
- keyed by the SHA-256 of ``model.keras``, the ONNX opset, tf2onnx's version and :data:`GRAPH_VERSION` (the
  scoring function's own version), so that a retrained model, another converter or changed scoring code never
  reads a stale graph.

ONNX Runtime's intra-op threads: ``$FAKEDETECT_ORT_THREADS`` when set, else what the caller asks (``fakedetect
serve`` gives each of its workers cores // workers), else every core this process may use.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fakedetect.atomic import atomic_path
from fakedetect.errors import FakedetectError
from fakedetect.framing import Framing
from fakedetect.paths import cache_dir
from fakedetect.runfolder import MODEL_FILE

log = logging.getLogger(__name__)

ENGINES = ("tensorflow", "onnxruntime", "auto")
ONNX_OPSET = 17
GRAPH_VERSION = 2  # bump when scoring_function's inputs or outputs change (trace features, taps, crops)
ENGINE_DIR = "engine"  # in a run folder, and in the cache


class EngineError(FakedetectError, RuntimeError):
    """The scoring engine asked for cannot run here (not installed, or its graph cannot be made)."""


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def ort_threads(default: int | None = None) -> int:
    """ONNX Runtime's intra-op threads: $FAKEDETECT_ORT_THREADS, else ``default``, else every core."""
    env = os.environ.get("FAKEDETECT_ORT_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise EngineError(f"FAKEDETECT_ORT_THREADS must be a whole number, not {env!r}") from None
        if n < 1:
            raise EngineError(f"FAKEDETECT_ORT_THREADS must be at least 1, not {n}")
        return n
    return default if default else cores()


def onnxruntime_installed() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def converter_version() -> str | None:
    """tf2onnx's version, or None when it is not installed (a graph cannot then be made, only read). Read from the
    package's metadata: importing tf2onnx would import TensorFlow."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tf2onnx")
    except PackageNotFoundError:
        return None


def model_hash(run_dir: str | Path) -> str:
    """SHA-256 of the run's model.keras, read once per process for a given file, size and modification time
    (``auto`` and the run's engine both ask for it)."""
    path = Path(run_dir) / MODEL_FILE
    st = path.stat()
    return _file_hash(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def variant_name(tta: bool, fr: Framing) -> str:
    """The scoring function's variant: resize or K crops with their rule, with or without the mirror image."""
    body = f"crop{fr.crops}-{fr.combine}" if fr.cropped else "resize"
    return f"{body}-s{fr.size}" + ("-tta" if tta else "")


def _writable(folder: Path) -> bool:
    probe = folder if folder.exists() else folder.parent
    return os.access(probe, os.W_OK)


class OnnxEngine:
    """A run's scoring function on ONNX Runtime: ``scoring_function(tta, fr)`` gives what
    :func:`fakedetect.run.scoring_function` gives for the Keras model (a callable: batch -> (P(fake), features,
    per-view P(fake)), numpy). Sessions are made on first use of a variant and kept.

    Args:
        run_dir: the run folder.
        tf_function: ``(tta, framing) ->`` the TensorFlow scoring function to convert (the run's
            :func:`fakedetect.run.scoring_function`), called only when a graph must be made.
        threads: intra-op threads (see :func:`ort_threads`).
    """

    engine = "onnxruntime"

    def __init__(self, run_dir: str | Path, tf_function: Callable | None = None, threads: int | None = None):
        self.run_dir = Path(run_dir)
        self.tf_function = tf_function
        self.threads = ort_threads(threads)
        self.sessions: dict[str, object] = {}
        self._hash: str | None = None

    @property
    def hash(self) -> str:
        if self._hash is None:
            self._hash = model_hash(self.run_dir)
        return self._hash

    def graph_file(self, tta: bool, fr: Framing, converter: str | None) -> str:
        return f"{variant_name(tta, fr)}-{self.hash[:16]}-opset{ONNX_OPSET}-tf2onnx{converter}-v{GRAPH_VERSION}.onnx"

    def _find(self, tta: bool, fr: Framing) -> Path | None:
        """A cached graph of this variant, made by the installed converter (or by any, when none is installed)."""
        converter = converter_version()
        folders = [self.run_dir / ENGINE_DIR, cache_dir() / ENGINE_DIR / self.hash[:16]]
        for folder in folders:
            if converter is not None:
                path = folder / self.graph_file(tta, fr, converter)
                if path.is_file():
                    return path
            elif folder.is_dir():
                stem = f"{variant_name(tta, fr)}-{self.hash[:16]}-opset{ONNX_OPSET}-tf2onnx"
                found = sorted(p for p in folder.glob(f"{stem}*-v{GRAPH_VERSION}.onnx"))
                if found:
                    return found[-1]
        return None

    def graph(self, tta: bool, fr: Framing) -> Path:
        """The graph of this variant: found in a cache, or made (TensorFlow and tf2onnx) and cached."""
        found = self._find(tta, fr)
        if found is not None:
            return found
        converter = converter_version()
        if converter is None:
            raise EngineError(f"no ONNX graph of {self.run_dir} ({variant_name(tta, fr)}) is cached and tf2onnx, "
                              "which makes one, is not installed: pip install tf2onnx, or score with "
                              "--engine tensorflow")
        folder = self.run_dir / ENGINE_DIR
        if not _writable(folder):
            folder = cache_dir() / ENGINE_DIR / self.hash[:16]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / self.graph_file(tta, fr, converter)
        with _file_lock(folder / ".lock"):
            if not path.is_file():  # another process may have made it while this one waited
                log.info(f"making the ONNX graph of {self.run_dir} ({variant_name(tta, fr)}): once per model")
                if self.tf_function is None:
                    raise EngineError(f"no ONNX graph of {self.run_dir} is cached and no model was given to make one")
                convert(self.tf_function(tta, fr), fr, path)
        return path

    def session(self, tta: bool, fr: Framing):
        key = variant_name(tta, fr)
        if key not in self.sessions:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            self.sessions[key] = ort.InferenceSession(str(self.graph(tta, fr)), opts,
                                                      providers=["CPUExecutionProvider"])
        return self.sessions[key]

    def scoring_function(self, tta: bool = False, fr: Framing | None = None):
        """A callable like :func:`fakedetect.run.scoring_function`'s, on ONNX Runtime."""
        if fr is None:
            raise ValueError("the ONNX engine needs the run's framing")
        sess = self.session(tta, fr)
        name = sess.get_inputs()[0].name

        def score(batch):
            outs = sess.run(None, {name: np.asarray(batch, np.float32)})
            return outs[0], outs[1:-1], outs[-1]

        return score


def convert(fn, fr: Framing, path: Path) -> None:
    """Writes the ONNX graph of the TensorFlow scoring function ``fn`` (for framing ``fr``) to ``path``
    (atomically)."""
    import tensorflow as tf
    import tf2onnx

    shape = (None, fr.crops, fr.size, fr.size, 3) if fr.cropped else (None, fr.size, fr.size, 3)
    spec = [tf.TensorSpec(shape, tf.float32, name="image")]
    with atomic_path(path, suffix=".onnx") as tmp:
        tf2onnx.convert.from_function(fn, input_signature=spec, opset=ONNX_OPSET, output_path=str(tmp))


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock on ``path`` (a lock file) held for the block: one converter at a time per folder."""
    import fcntl

    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def choose_engine(name: str, run_dir: str | Path | None = None, fr: Framing | None = None) -> str:
    """The engine to use for ``name`` (one of :data:`ENGINES`): ``auto`` is ONNX Runtime when it is installed and
    the run has (for its own input mode), or can make (tf2onnx installed), its graph; else TensorFlow.

    Raises:
        EngineError: an unknown name, or ``onnxruntime`` asked for and not installed.
    """
    if name not in ENGINES:
        raise EngineError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    if name == "tensorflow":
        return name
    if not onnxruntime_installed():
        if name == "auto":
            return "tensorflow"
        raise EngineError('--engine onnxruntime needs the onnxruntime package: pip install onnxruntime '
                          "(part of fakedetect's default install), or score with --engine tensorflow")
    if name == "auto" and converter_version() is None:
        cached = run_dir is not None and fr is not None and OnnxEngine(run_dir)._find(False, fr) is not None
        return "onnxruntime" if cached else "tensorflow"
    return "onnxruntime"
