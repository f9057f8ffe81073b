"""Is an image like the ones the model was trained on?

A detector trained on one kind of image (CIFAKE's 32x32 pictures, say) still answers with confidence about a
4000x3000 phone photo it has nothing to say about. fakedetect fits, at the end of training, a density model of
the training images in the backbone's feature space, at several depths: the spatial mean of the stem's output, of
every stage's last block and of the last feature map (the pooled features the head reads). At each depth, one
Gaussian per group of training images (class, or source and class) with a shared covariance (Ledoit-Wolf
shrinkage): the Mahalanobis baseline of out-of-distribution detection, over several layers as in Lee et al.
(2018). The last features alone miss much of a shift (fine-tuning makes them about real-vs-fake, not about what
the image is), the early ones see resolution, blur and texture.

An image's ``domain_distance`` is the mean over depths of its distance to the nearest group mean, each divided
by the median distance of the training images at that depth (so that no depth dominates); the image is
``in_domain`` when that is at most the 99th percentile of the validation images' values. About one matrix
product per depth and image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fakedetect.atomic import atomic_path

QUANTILE = 0.99  # of validation distances: 1% of in-domain images are flagged by construction
MAX_FIT_IMAGES = 5000  # training images (per run) whose features fit the density
METHOD = ("mean over backbone depths (stem, each stage, last features) of the Mahalanobis distance to the nearest "
          "class (and source) mean, shared covariance (Ledoit-Wolf), each depth divided by its median on training "
          "images; in domain when at most the threshold")


@dataclass
class Gaussians:
    """Group means with one shared precision matrix, at one depth (``means`` and ``precision`` are not to be
    changed after construction: terms of them are computed once)."""
    means: np.ndarray  # (groups, d)
    precision: np.ndarray  # (d, d): inverse of the shared, shrunk covariance
    scale: float = 1.0  # median distance of the training images
    _precision32: np.ndarray = field(init=False, repr=False, compare=False)
    _centred: np.ndarray = field(init=False, repr=False, compare=False)
    _mean_term: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._precision32 = np.asarray(self.precision).astype(np.float32)
        # the means centred on the first, and each mean's own term, the same for every image: (groups x d) x
        # (d x d) in float64, made once (it was most of a single image's domain check)
        self._centred = self.means - self.means[0]
        self._mean_term = np.einsum("ij,ij->i", self._centred @ self.precision, self._centred)

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row to the nearest mean: one (n, d) x (d, d) product for all means.

        The product runs in float32 on the rows centred on the first mean (the costly part of a prediction's
        domain check; float64 would double it), the rest in float64."""
        x = np.asarray(features, np.float64) - self.means[0]
        xp = (x.astype(np.float32) @ self._precision32).astype(np.float64)
        sq = np.einsum("ij,ij->i", xp, x)[:, None] - 2 * xp @ self._centred.T + self._mean_term[None, :]
        return np.sqrt(np.maximum(sq.min(axis=1), 0.0))


@dataclass
class DomainModel:
    depths: list[Gaussians]  # in the order of the scoring function's features, the last one the pooled features
    threshold: float  # distances above it are "unlike the training images"
    names: list[str] = field(default_factory=list)  # the backbone layers the depths were taken at

    def distance(self, features: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """The domain distance of each image from its features at every depth (a list of (n, d_i) arrays).
        A model with one depth (runs trained before the multi-depth model) reads the last (pooled) features."""
        if not isinstance(features, list | tuple):
            features = [features]
        features = list(features)[-len(self.depths):]
        if len(features) != len(self.depths):
            raise ValueError(f"{len(features)} feature arrays for a domain model of {len(self.depths)} depths")
        return np.mean([g.distance(f) / g.scale for g, f in zip(self.depths, features, strict=True)], axis=0)

    def in_domain(self, distances: np.ndarray) -> np.ndarray:
        return np.asarray(distances) <= self.threshold

    def save(self, path: str | Path) -> None:
        arrays = {"threshold": self.threshold, "names": np.array(self.names, dtype=str),
                  "scales": np.array([g.scale for g in self.depths])}
        for i, g in enumerate(self.depths):
            arrays[f"means_{i}"] = g.means.astype(np.float32)
            arrays[f"precision_{i}"] = g.precision.astype(np.float32)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez_compressed(tmp, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> DomainModel | None:
        path = Path(path)
        if not path.is_file():
            return None  # a run trained before domain models were fitted
        with np.load(path) as z:
            if "means" in z:  # the first format: one depth (the pooled features), no scale
                return cls([Gaussians(z["means"].astype(np.float64), z["precision"].astype(np.float64))],
                           float(z["threshold"]), ["pooled"])
            depths = [Gaussians(z[f"means_{i}"].astype(np.float64), z[f"precision_{i}"].astype(np.float64),
                                float(s)) for i, s in enumerate(z["scales"])]
            return cls(depths, float(z["threshold"]), [str(n) for n in z["names"]])


def fit_gaussians(x: np.ndarray, groups: np.ndarray) -> Gaussians:
    """Group means and a shared, shrunk covariance; the scale is the median distance of ``x`` itself."""
    from sklearn.covariance import LedoitWolf

    x = np.asarray(x, np.float64)
    ids, index = np.unique(np.asarray(groups).astype(int), return_inverse=True)
    means = np.stack([x[index == k].mean(axis=0) for k in range(len(ids))])
    cov = LedoitWolf(assume_centered=True).fit(x - means[index]).covariance_
    g = Gaussians(means, np.linalg.pinv(cov, hermitian=True))
    median = float(np.median(g.distance(x))) if len(x) else 1.0
    g.scale = median if median > 0 else 1.0
    return g


def fit_domain(features: list[np.ndarray] | np.ndarray, groups: np.ndarray,
               val_features: list[np.ndarray] | np.ndarray, quantile: float = QUANTILE,
               names: list[str] | None = None) -> DomainModel:
    """The density of the training features at every depth; the threshold from validation features.

    Args:
        features: training images' features, one (n, d_i) array per depth (or one array: one depth).
        groups: each training image's group (its class; ``class + 2 * source`` with several sources).
        val_features: validation images' features, the same depths.
    """
    if not isinstance(features, list | tuple):
        features, val_features = [features], [val_features]
    model = DomainModel([fit_gaussians(f, groups) for f in features], float("inf"), list(names or []))
    n_val = len(val_features[0]) if len(val_features) else 0
    model.threshold = float(np.quantile(model.distance(list(val_features)), quantile)) if n_val else 0.0
    return model
