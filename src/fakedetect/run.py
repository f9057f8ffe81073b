"""Loading a run and scoring images with it: the one path shared by evaluate, predict and the web app.

The contract of the one scoring call, :meth:`Run.score`:

- input: checked image files (``paths``, with ``pillow_only`` per file as the checks set it), decoded uint8
  H x W x 3 images (``images``), or a batch framed already by :func:`fakedetect.data.pipeline.frame`
  (``framed``: what a Beam worker decoded in its own step, :mod:`fakedetect.beam`);
- a hook for extra views of an image (``views``: image -> {name: image}; the web app's mild variants), scored in
  the same forward pass as the image; ``tta`` scores the mirror image too (mean logit); ``perturb`` changes each
  decoded file before it is resized (robustness);
- output: :class:`Scores`, the columns ``predict`` writes, one row per scored input in input order, with the
  inputs that could not be decoded listed in ``skipped``. The run's temperature and threshold are applied here
  and nowhere else; the domain check measures the image itself, never a view.
- the run's input mode (:class:`fakedetect.framing.Framing`, from its card) applies to the image and to every
  view alike: resized, or K native-resolution crops whose logits combine into the image's score (each crop's
  calibrated P(fake) in ``Scores.crops``).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fakedetect.card import ModelCard
from fakedetect.data.checks import TF_REJECTED
from fakedetect.domain import DomainModel
from fakedetect.errors import RunError
from fakedetect.framing import Framing, framing
from fakedetect.metrics import EPS, apply_temperature
from fakedetect.models import OUTPUT_LAYER, POOL_LAYER
from fakedetect.progress import Progress
from fakedetect.runfolder import CARD_FILE, DOMAIN_FILE, MODEL_FILE

log = logging.getLogger(__name__)


@dataclass
class Scores:
    """What :meth:`Run.score` returns: one entry per scored input, in input order (see the module's contract)."""
    names: list[str]  # the paths given, or the images' names
    raw: np.ndarray  # uncalibrated P(fake)
    prob_fake: np.ndarray  # P(fake) after the run's temperature
    label: list[str]  # "fake" when prob_fake is at least the run's threshold, else "real"
    in_domain: list[bool | None]
    domain_distance: list[float | None]
    kept: np.ndarray  # the input positions of these rows (an input that could not be decoded has none)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason) of the others
    views: dict[str, np.ndarray] = field(default_factory=dict)  # view name -> P(fake) per row (calibrated)
    crops: np.ndarray | None = None  # crop mode: rows x K, each crop's calibrated P(fake) (None: resize mode)

    @property
    def prob_real(self) -> np.ndarray:
        return 1 - self.prob_fake

    def table(self):
        """The rows as ``predict`` writes them: path, prob_fake, prob_real, label, in_domain, domain_distance."""
        import pandas as pd

        return pd.DataFrame({"path": self.names, "prob_fake": self.prob_fake, "prob_real": self.prob_real,
                             "label": self.label, "in_domain": self.in_domain,
                             "domain_distance": self.domain_distance})


class Run:
    """A trained run: its card, its domain model and the engine that computes its network.

    The Keras model (``model``) is loaded on first use: on the ONNX Runtime engine, scoring never needs it (nor
    TensorFlow) once the run's graph is cached (see :mod:`fakedetect.engine`)."""

    def __init__(self, path: Path, model: object | None, card: ModelCard, domain: DomainModel | None = None,
                 engine: str = "tensorflow", threads: int | None = None):
        self.path, self.card, self.domain = Path(path), card, domain
        self._model = model
        self.engine = engine  # "tensorflow" or "onnxruntime" (resolved: never "auto")
        self.onnx = None
        if engine == "onnxruntime":
            from fakedetect.engine import OnnxEngine

            self.onnx = OnnxEngine(self.path, self.onnx_source, threads)

    @property
    def model(self):
        """The Keras model (loaded in Keras' safe mode on first use)."""
        if self._model is None:
            from fakedetect.models.classifier import load_model

            self._model = load_model(self.path / MODEL_FILE)
        return self._model

    def onnx_source(self, tta: bool, fr: Framing):
        """The TensorFlow scoring function an ONNX graph of this run is made from."""
        return scoring_function(self.model, tta, fr)

    @property
    def network(self):
        """What computes the scoring function: the Keras model, or the run's ONNX Runtime engine."""
        return self.onnx if self.onnx is not None else self.model

    @property
    def image_size(self) -> int:
        return self.card.image_size

    @property
    def framing(self) -> Framing:
        """How an image becomes this model's input (resized, or native-resolution crops)."""
        return self.card.framing

    @property
    def threshold(self) -> float:
        return float(self.card.threshold)

    @property
    def temperature(self) -> float:
        return self.card.temperature

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """The model's P(fake) after the run's temperature scaling (what every output reports)."""
        return apply_temperature(raw, self.temperature)

    def domain_fields(self, distances: np.ndarray | None, n: int) -> dict[str, list]:
        """``in_domain`` and ``domain_distance`` for ``n`` images (None each when the run has no domain model)."""
        if self.domain is None or distances is None:
            return {"in_domain": [None] * n, "domain_distance": [None] * n}
        return {"in_domain": [bool(v) for v in self.domain.in_domain(distances)],
                "domain_distance": [float(d) for d in distances]}

    def score(self, paths: Sequence[str] | None = None, pillow_only: Sequence[bool] | None = None,
              images: Sequence | None = None, names: Sequence[str] | None = None, batch_size: int = 64,
              views: Callable | None = None, tta: bool = False, perturb: Callable | None = None,
              framed: np.ndarray | None = None) -> Scores:
        """The one scoring call: P(fake), calibrated, with the decision and the domain check, for checked files
        (``paths``), decoded images (``images``) or framed ones (``framed``: B x S x S x 3, or B x K x S x S x 3
        in crop mode, float32 0..255, scored in one forward pass); see the module's docstring for the contract."""
        if sum(x is not None for x in (paths, images, framed)) != 1:
            raise ValueError("Run.score takes one of paths, images or framed")
        view_raw: dict[str, np.ndarray] = {}
        if framed is not None:
            names = list(names) if names is not None else [f"image {i}" for i in range(len(framed))]
            fn = scoring_function(self.network, tta, self.framing)
            raw, dist, crops = forward(fn, framed, self.domain)
        elif paths is not None:
            names = [str(p) for p in paths]
            raw, dist, crops = score_files(self.network, names, self.framing, batch_size, pillow_only, perturb,
                                           domain=self.domain, tta=tta, with_crops=True)
        else:
            names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
            raw, dist, view_raw, crops = score_images(self.network, images, self.framing, self.domain, views, tta)
        kept = np.flatnonzero(~np.isnan(raw))
        raw, dist = raw[kept], dist[kept] if dist is not None else None
        prob = self.calibrate(raw)
        return Scores(
            names=[names[i] for i in kept], raw=raw, prob_fake=prob,
            label=["fake" if p >= self.threshold else "real" for p in prob],
            **self.domain_fields(dist, len(prob)), kept=kept,
            skipped=[(names[i], DECODE_FAILED) for i in np.setdiff1d(np.arange(len(names)), kept)],
            views={k: self.calibrate(v[kept]) for k, v in view_raw.items()},
            crops=self.calibrate(crops[kept]) if self.framing.cropped else None)


def check_run_dir(run_dir: str | Path) -> ModelCard:
    """Checks that ``run_dir`` holds a finished run (without loading the model); returns its card.

    Raises:
        RunError: the folder, the model or its card is missing or unreadable.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run folder not found: {run_dir}")
    model_path, card_path = run_dir / MODEL_FILE, run_dir / CARD_FILE
    if not model_path.is_file() or not card_path.is_file():
        missing = [p.name for p in (model_path, card_path) if not p.is_file()]
        raise RunError(f"{run_dir} holds no trained model (missing {', '.join(missing)}): "
                       "train one with `fakedetect train --data DATA --out RUN_DIR`")
    return ModelCard.read(run_dir)


def load_run(run_dir: str | Path, engine: str = "tensorflow", threads: int | None = None) -> Run:
    """Loads a run folder: its card, its domain model, and its scoring engine (see :mod:`fakedetect.engine`;
    ``auto`` resolved here). On TensorFlow, ``model.keras`` is loaded now (Keras safe mode); on ONNX Runtime, only
    if its graph must be made.

    Raises:
        RunError: the folder, the model or its card is missing.
        EngineError: the engine asked for cannot run here.
    """
    from fakedetect.engine import choose_engine

    card = check_run_dir(run_dir)
    run_dir = Path(run_dir)
    engine = choose_engine(engine, run_dir, card.framing)
    run = Run(run_dir, None, card, DomainModel.load(run_dir / DOMAIN_FILE), engine, threads)
    if engine == "tensorflow":
        run.model  # noqa: B018 (loads it: a broken model file fails here, not at the first image)
    return run


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def scoring_function(model, tta: bool = False, fr: Framing | None = None):
    """The model's inference as a tf.function made once per model and input mode, giving (P(fake), features,
    per-view P(fake)): eager calls cost ~40% of the throughput on small images, and a new tf.function per call
    would trace again every time.

    The features, from the same forward pass, are a list: the trace features of the input
    (:func:`fakedetect.trace.trace_features`), then the spatial mean of each backbone layer of
    :func:`~fakedetect.models.classifier.feature_taps`, the last one being the pooled features the head reads (the
    domain check's depths; a domain model reads the last ones it was fitted on).

    Args:
        tta: test-time augmentation: P(fake) from the mean logit of the image and its mirror image (two forward
            passes); the features stay those of the image as given.
        fr: a cropping :class:`Framing` takes batches of B x K x S x S x 3 crops: each crop is scored (with its
            mirror under ``tta``), the image's P(fake) is the sigmoid of the crops' combined logits (mean or max)
            and its features the mean of the crops' features; the per-view P(fake) is then B x K (each crop's),
            otherwise B x 1.
    """
    if getattr(model, "engine", None) == "onnxruntime":  # the run's ONNX Runtime engine: no TensorFlow
        return model.scoring_function(tta, fr)
    import keras
    import tensorflow as tf

    from fakedetect.models.classifier import feature_taps, get_backbone
    from fakedetect.trace import trace_features

    k = fr.crops if fr is not None and fr.cropped else 0
    rule = fr.combine if k else ""
    fns = _COMPILED.setdefault(model, {})
    if (tta, k, rule) not in fns:
        base = get_backbone(model)
        taps = keras.Model(base.input, [base.get_layer(n).output for n in feature_taps(model)])
        pool, head = model.get_layer(POOL_LAYER), model.get_layer(OUTPUT_LAYER)  # dropout: nothing at inference

        def forward(x):
            maps = taps(x, training=False)
            pooled = pool(maps[-1])
            return head(pooled), [trace_features(x), *[tf.reduce_mean(m, axis=[1, 2]) for m in maps[:-1]], pooled]

        def score(x):
            if k:
                b = tf.shape(x)[0]
                x = tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))
            p, feats = forward(x)
            feats = [tf.cast(f, tf.float32) for f in feats]
            if tta:
                mirrored = head(pool(taps(tf.reverse(x, axis=[2]), training=False)[-1]))
                p = tf.sigmoid((tf_logit(p) + tf_logit(mirrored)) / 2)
            if not k:
                return p, feats, p
            logits, combined = combine_crops(p, b, k, rule)
            feats = [tf.reduce_mean(tf.reshape(f, [b, k, -1]), axis=1) for f in feats]
            return tf.sigmoid(combined)[:, None], feats, tf.sigmoid(logits)

        fns[(tta, k, rule)] = tf.function(score, reduce_retracing=True)
    return fns[(tta, k, rule)]


def combine_crops(p, b, k: int, rule: str):
    """(logits B x K, combined logit B) of the P(fake) of B images' K crops (B*K values, image by image): the
    crops' logits and their mean, or their max. The one combine rule of scoring and training's validation."""
    import tensorflow as tf

    logits = tf.reshape(tf_logit(p), [b, k])
    return logits, tf.reduce_max(logits, axis=1) if rule == "max" else tf.reduce_mean(logits, axis=1)


def tf_logit(p):
    """log(p / (1 - p)) in TensorFlow, float32. ``metrics.logit`` clips p to [EPS, 1 - EPS]; here p and 1 - p are
    each clipped from below at EPS, which is the same for 0 <= p <= 1 but stays exact in float32 (1 - 1e-7 is not
    a float32 and rounds to 1 - 1.19e-7, while 1 - p is exact for p >= 0.5)."""
    import tensorflow as tf

    p = tf.cast(p, tf.float32)
    return tf.math.log(tf.maximum(p, EPS)) - tf.math.log(tf.maximum(1.0 - p, EPS))


DECODE_FAILED = TF_REJECTED  # a file that passed the checks and still failed to decode in the pipeline


def predict_raw(model, paths: list[str], image_size: int | Framing, batch_size: int = 32,
                pillow_only: list[bool] | None = None, perturb: Callable | None = None,
                tta: bool = False) -> np.ndarray:
    """Uncalibrated P(fake) for checked image files, batched through tf.data, in input order.
    A file that cannot be decoded after all gets NaN (see :data:`DECODE_FAILED`); callers list it as skipped.

    Args:
        perturb: optional function on each decoded uint8 image (robustness tests), before framing.
    """
    return score_files(model, paths, image_size, batch_size, pillow_only, perturb, tta=tta)[0]


def score_files(model, paths: list[str], image_size: int | Framing, batch_size: int = 32,
                pillow_only: list[bool] | None = None, perturb: Callable | None = None,
                domain: DomainModel | None = None, tta: bool = False, with_crops: bool = False) -> tuple:
    """(uncalibrated P(fake), domain distance or None) per file, from one forward pass; see :func:`predict_raw`.
    ``with_crops`` adds each view's uncalibrated P(fake) (files x K; x 1 in resize mode)."""
    from fakedetect.data.pipeline import build_dataset

    fr = framing(image_size)
    out = np.full(len(paths), np.nan, dtype=np.float64)
    dist = np.full(len(paths), np.nan, dtype=np.float64) if domain is not None else None
    crops = np.full((len(paths), fr.views), np.nan, dtype=np.float64)
    if paths:
        ds = build_dataset(paths, None, fr, batch_size, pillow_only=pillow_only, perturb=perturb)
        fn = scoring_function(model, tta, fr)
        with Progress("scored images", len(paths), log) as progress:
            for idx, batch in ds:
                i = idx.numpy()
                out[i], d, crops[i] = forward(fn, batch, domain)
                if domain is not None:
                    dist[i] = d
                progress.update(int(i[-1]) + 1)
    return (out, dist, crops) if with_crops else (out, dist)


def forward(fn, batch, domain: DomainModel | None = None) -> tuple:
    """(uncalibrated P(fake), domain distance or None, each view's uncalibrated P(fake): B x K, x 1 in resize
    mode) of one framed batch through a :func:`scoring_function`."""
    p, feats, per_view = fn(batch)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    per_view = np.asarray(per_view, dtype=np.float64).reshape(len(p), -1)
    dist = domain.distance([np.asarray(f) for f in feats]) if domain is not None else None
    return p, dist, per_view


@dataclass(frozen=True)
class Framed:
    """A view that comes framed already (float32, S x S x 3 in resize mode): the web app's downscale variant goes
    from the upload to the model's input in one product instead of being made at the upload's size and resized."""
    pixels: object


def framed(img, fr: Framing, numpy: bool = False):
    """A decoded image framed for the model (see :func:`fakedetect.data.pipeline.frame`); in crop mode, a stack of
    K crops (K x S x S x 3) is taken as framed already, and so is a :class:`Framed` view. ``numpy``: framed without
    TensorFlow (:func:`fakedetect.pixels.frame`), for the ONNX Runtime engine."""
    if isinstance(img, Framed):
        if numpy:
            return np.asarray(img.pixels, np.float32)
        import tensorflow as tf

        return tf.cast(img.pixels, tf.float32)
    if numpy:
        from fakedetect import pixels

        img = np.asarray(img)
        return img.astype(np.float32) if fr.cropped and img.ndim == 4 else pixels.frame(img, fr)
    import tensorflow as tf

    from fakedetect.data.pipeline import frame

    img = tf.convert_to_tensor(img)
    if fr.cropped and img.shape.rank == 4:
        return tf.cast(img, tf.float32)
    return frame(img, fr)


def score_images(model, images: Sequence, image_size: int | Framing, domain: DomainModel | None = None,
                 views: Callable | None = None, tta: bool = False) -> tuple:
    """(uncalibrated P(fake), domain distance or None, {view: uncalibrated P(fake)}, each crop's uncalibrated
    P(fake): images x K, x 1 in resize mode) of decoded uint8 images, one forward pass per image with its views
    (``views(image)`` -> {name: uint8 image}), each framed as the image is (in crop mode a view may come framed
    already, K x S x S x 3: variants made per crop; in either mode a :class:`Framed` view is). On the ONNX Runtime
    engine, without TensorFlow (numpy framing, :mod:`fakedetect.pixels`)."""
    fr = framing(image_size)
    numpy = getattr(model, "engine", None) == "onnxruntime"
    fn = scoring_function(model, tta, fr)
    raw = np.full(len(images), np.nan)
    dist = np.full(len(images), np.nan) if domain is not None else None
    crops = np.full((len(images), fr.views), np.nan)
    view_raw: dict[str, np.ndarray] = {}
    for i, img in enumerate(images):
        extra = views(img) if views is not None else {}
        views_framed = [framed(v, fr, numpy) for v in [img, *extra.values()]]
        if numpy:
            batch = np.stack(views_framed)
        else:
            import tensorflow as tf

            batch = tf.stack(views_framed)
        p, feats, per_view = fn(batch)
        p = np.asarray(p, dtype=np.float64).reshape(-1)
        raw[i] = p[0]
        crops[i] = np.asarray(per_view, dtype=np.float64)[0].reshape(-1)
        for k, (name, _) in enumerate(extra.items()):
            view_raw.setdefault(name, np.full(len(images), np.nan))[i] = p[k + 1]
        if domain is not None:
            dist[i] = domain.distance([np.asarray(f)[:1] for f in feats])[0]
    return raw, dist, view_raw, crops
