"""Is an image like the ones the model was trained on?

A detector trained on one kind of image (CIFAKE's 32x32 pictures, say) still answers with confidence about a
4000x3000 phone photo it has nothing to say about. fakedetect fits, at the end of training, a density model of
the training images in the backbone's pooled feature space: one Gaussian per class with a shared covariance
(Ledoit-Wolf shrinkage), the standard Mahalanobis baseline of out-of-distribution detection (Lee et al., 2018).
An image's ``domain_distance`` is its Mahalanobis distance to the nearer class mean; it is ``in_domain`` when the
distance is at most the 99th percentile of the validation images' distances. One matrix product per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fakedetect.atomic import atomic_path

DOMAIN_FILE = "domain.npz"
QUANTILE = 0.99  # of validation distances: 1% of in-domain images are flagged by construction
MAX_FIT_IMAGES = 5000  # training images (per run) whose features fit the density


@dataclass
class DomainModel:
    means: np.ndarray  # (2, d): real, fake
    precision: np.ndarray  # (d, d): inverse of the shared, shrunk covariance
    threshold: float  # distances above it are "unlike the training images"

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of ``features`` to the nearer class mean."""
        x = np.asarray(features, np.float64)
        d = []
        for mu in self.means:
            diff = x - mu
            d.append(np.einsum("ij,ij->i", diff @ self.precision, diff))
        return np.sqrt(np.maximum(np.min(d, axis=0), 0.0))

    def in_domain(self, distances: np.ndarray) -> np.ndarray:
        return np.asarray(distances) <= self.threshold

    def save(self, path: str | Path) -> None:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez_compressed(tmp, means=self.means.astype(np.float32),
                                precision=self.precision.astype(np.float32), threshold=self.threshold)

    @classmethod
    def load(cls, path: str | Path) -> DomainModel | None:
        path = Path(path)
        if not path.is_file():
            return None  # a run trained before domain models were fitted
        with np.load(path) as z:
            return cls(z["means"].astype(np.float64), z["precision"].astype(np.float64), float(z["threshold"]))


def fit_domain(features: np.ndarray, labels: np.ndarray, val_features: np.ndarray,
               quantile: float = QUANTILE) -> DomainModel:
    """Class means and a shared covariance from training features; the threshold from validation features."""
    from sklearn.covariance import LedoitWolf

    x = np.asarray(features, np.float64)
    y = np.asarray(labels).astype(int)
    means = np.stack([x[y == c].mean(axis=0) for c in (0, 1)])
    centred = x - means[y]
    cov = LedoitWolf(assume_centered=True).fit(centred).covariance_
    model = DomainModel(means, np.linalg.pinv(cov, hermitian=True), float("inf"))
    model.threshold = float(np.quantile(model.distance(val_features), quantile)) if len(val_features) else 0.0
    return model
