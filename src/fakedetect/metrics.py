"""Binary metrics (positive class = fake), threshold choice and temperature scaling. numpy + scikit-learn only."""

from __future__ import annotations

import math

import numpy as np

EPS = 1e-7


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def apply_temperature(p: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probabilities sigmoid(logit(p) / T); T = 1 leaves them unchanged."""
    return sigmoid(logit(p) / temperature)


def bce(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(y, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def fit_temperature(y: np.ndarray, p: np.ndarray) -> float:
    """The temperature minimising the log loss of ``p`` on labels ``y`` (a 1-D search over log T)."""
    from scipy.optimize import minimize_scalar

    z = logit(p)
    res = minimize_scalar(lambda t: bce(y, sigmoid(z / math.exp(t))), bounds=(-4, 4), method="bounded")
    return float(math.exp(res.x))


def ece(y: np.ndarray, p: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of P(fake): bin-weighted |mean predicted - fraction fake| over equal-width bins."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(p[m].mean() - y[m].mean())
    return float(total / len(y)) if len(y) else float("nan")


def reliability_bins(y: np.ndarray, p: np.ndarray, bins: int = 15) -> list[dict]:
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return [{"lo": b / bins, "hi": (b + 1) / bins, "n": int((idx == b).sum()),
             "mean_prob": float(p[idx == b].mean()) if (idx == b).any() else None,
             "frac_fake": float(y[idx == b].mean()) if (idx == b).any() else None} for b in range(bins)]


def eer(y: np.ndarray, p: np.ndarray) -> float:
    """Equal error rate: where the false-positive rate equals the false-negative rate (interpolated on the ROC)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    if i > 0 and (fnr[i] - fpr[i]) * (fnr[i - 1] - fpr[i - 1]) < 0:
        # Linear interpolation between the two ROC points that bracket the crossing.
        d0, d1 = fnr[i - 1] - fpr[i - 1], fnr[i] - fpr[i]
        t = d0 / (d0 - d1)
        return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))
    return float((fpr[i] + fnr[i]) / 2)


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict:
    """All the scores of P(fake) against labels; AUC-type scores are None when only one class is present."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    pred = (p >= threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    n_real, n_fake = int((y == 0).sum()), int((y == 1).sum())

    def div(a, b):
        return a / b if b else None

    recall = div(tp, tp + fn)
    specificity = div(tn, tn + fp)
    precision = div(tp, tp + fp)
    f1 = div(2 * tp, 2 * tp + fp + fn)
    both = n_real > 0 and n_fake > 0
    bal = (recall + specificity) / 2 if both else None
    return {
        "n": len(y),
        "n_real": n_real,
        "n_fake": n_fake,
        "threshold": float(threshold),
        "loss": bce(y, p) if len(y) else None,
        "accuracy": div(tp + tn, len(y)),
        "balanced_accuracy": bal,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "specificity": specificity,
        "accuracy_real": specificity,
        "accuracy_fake": recall,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "average_precision": float(average_precision_score(y, p)) if both else None,
        "eer": eer(y, p) if both else None,
        "ece": ece(y, p) if len(y) else None,
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def choose_threshold(y: np.ndarray, p: np.ndarray, target_fpr: float | None = None) -> float:
    """Decision threshold on P(fake), chosen on validation data.

    By default the threshold that maximises balanced accuracy; with ``target_fpr``, the one with the highest
    true-positive rate whose false-positive rate on real images is at most ``target_fpr``. The threshold is put
    halfway between the two neighbouring scores, not on a score, so it does not hinge on one image.
    """
    from sklearn.metrics import roc_curve

    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    if (y == 0).sum() == 0 or (y == 1).sum() == 0:
        return 0.5
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    # thr[0] is +inf (nothing called fake); thr[k] for k >= 1 are the scores, decreasing.
    if target_fpr is not None:
        ok = np.flatnonzero(fpr <= target_fpr)
        best = ok[np.isclose(tpr[ok], tpr[ok].max())]
    else:
        score = (tpr + 1 - fpr) / 2
        best = np.flatnonzero(np.isclose(score, score.max()))
    # Each best k stands for the interval of thresholds (thr[k+1], thr[k]] that gives the same decisions.
    # Prefer 0.5 when it lies in one (calibrated probabilities make 0.5 the natural cut); otherwise the middle
    # of the interval nearest to 0.5.
    intervals = []
    for k in best:
        hi = 1.0 if k == 0 else float(thr[k])
        lo = float(thr[k + 1]) if k + 1 < len(thr) else 0.0
        if lo < 0.5 <= hi:
            return 0.5
        intervals.append((lo, hi))
    lo, hi = min(intervals, key=lambda iv: min(abs(iv[0] - 0.5), abs(iv[1] - 0.5)))
    return float((lo + hi) / 2)
