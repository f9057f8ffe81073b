"""Loading a run and scoring images with it: the one path shared by evaluate, predict and the web app."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fakedetect.card import ModelCard
from fakedetect.data.checks import TF_REJECTED
from fakedetect.domain import DomainModel
from fakedetect.errors import RunError
from fakedetect.metrics import EPS, apply_temperature
from fakedetect.models import OUTPUT_LAYER, POOL_LAYER
from fakedetect.progress import Progress
from fakedetect.runfolder import CARD_FILE, DOMAIN_FILE, MODEL_FILE

log = logging.getLogger(__name__)



@dataclass
class Run:
    path: Path
    model: object  # keras.Model
    card: ModelCard
    domain: DomainModel | None = None  # None: a run trained before domain models were fitted

    @property
    def image_size(self) -> int:
        return self.card.image_size

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


def load_run(run_dir: str | Path) -> Run:
    """Loads ``model.keras`` (Keras safe mode) and ``model.json`` from a run folder.

    Raises:
        RunError: the folder, the model or its card is missing.
    """
    from fakedetect.models.classifier import load_model

    card = check_run_dir(run_dir)
    return Run(Path(run_dir), load_model(Path(run_dir) / MODEL_FILE), card,
               DomainModel.load(Path(run_dir) / DOMAIN_FILE))


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def scoring_function(model, tta: bool = False):
    """The model's inference as a tf.function made once per model, giving (P(fake), features): eager calls cost
    ~40% of the throughput on small images, and a new tf.function per call would trace again every time.

    The features, from the same forward pass, are a list: the spatial mean of each backbone layer of
    :func:`~fakedetect.models.classifier.feature_taps` (the domain check's depths), the last one being the pooled
    features the head reads.

    Args:
        tta: test-time augmentation: P(fake) from the mean logit of the image and its mirror image (two forward
            passes); the features stay those of the image as given.
    """
    import keras
    import tensorflow as tf

    from fakedetect.models.classifier import feature_taps, get_backbone

    fns = _COMPILED.setdefault(model, {})
    if tta not in fns:
        base = get_backbone(model)
        taps = keras.Model(base.input, [base.get_layer(n).output for n in feature_taps(model)])
        pool, head = model.get_layer(POOL_LAYER), model.get_layer(OUTPUT_LAYER)  # dropout: nothing at inference

        def forward(x):
            maps = taps(x, training=False)
            pooled = pool(maps[-1])
            return head(pooled), [tf.reduce_mean(m, axis=[1, 2]) for m in maps[:-1]] + [pooled]

        def score(x):
            p, feats = forward(x)
            if tta:
                mirrored = head(pool(taps(tf.reverse(x, axis=[2]), training=False)[-1]))
                p = tf.sigmoid((tf_logit(p) + tf_logit(mirrored)) / 2)
            return p, [tf.cast(f, tf.float32) for f in feats]

        fns[tta] = tf.function(score, reduce_retracing=True)
    return fns[tta]


def tf_logit(p):
    """log(p / (1 - p)) in TensorFlow, float32. ``metrics.logit`` clips p to [EPS, 1 - EPS]; here p and 1 - p are
    each clipped from below at EPS, which is the same for 0 <= p <= 1 but stays exact in float32 (1 - 1e-7 is not
    a float32 and rounds to 1 - 1.19e-7, while 1 - p is exact for p >= 0.5)."""
    import tensorflow as tf

    p = tf.cast(p, tf.float32)
    return tf.math.log(tf.maximum(p, EPS)) - tf.math.log(tf.maximum(1.0 - p, EPS))


DECODE_FAILED = TF_REJECTED  # a file that passed the checks and still failed to decode in the pipeline


def predict_raw(model, paths: list[str], image_size: int, batch_size: int = 32,
                pillow_only: list[bool] | None = None, perturb: Callable | None = None,
                tta: bool = False) -> np.ndarray:
    """Uncalibrated P(fake) for checked image files, batched through tf.data, in input order.
    A file that cannot be decoded after all gets NaN (see :data:`DECODE_FAILED`); callers list it as skipped.

    Args:
        perturb: optional function on each decoded uint8 image (robustness tests), before resizing.
    """
    return score_files(model, paths, image_size, batch_size, pillow_only, perturb, tta=tta)[0]


def score_files(model, paths: list[str], image_size: int, batch_size: int = 32,
                pillow_only: list[bool] | None = None, perturb: Callable | None = None,
                domain: DomainModel | None = None, tta: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(uncalibrated P(fake), domain distance or None) per file, from one forward pass; see :func:`predict_raw`."""
    from fakedetect.data.pipeline import build_dataset

    out = np.full(len(paths), np.nan, dtype=np.float64)
    dist = np.full(len(paths), np.nan, dtype=np.float64) if domain is not None else None
    if not paths:
        return out, dist
    ds = build_dataset(paths, None, image_size, batch_size, pillow_only=pillow_only, perturb=perturb)
    fn = scoring_function(model, tta)
    with Progress("scored images", len(paths), log) as progress:
        for idx, batch in ds:
            i = idx.numpy()
            p, feats = fn(batch)
            out[i] = np.asarray(p, dtype=np.float64).reshape(-1)
            if domain is not None:
                dist[i] = domain.distance([np.asarray(f) for f in feats])
            progress.update(int(i[-1]) + 1)
    return out, dist
