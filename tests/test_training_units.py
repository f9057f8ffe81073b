"""The training loop's pieces that need no model: schedules, warm-up, additive validation sums."""

import math

import numpy as np
import pytest

from fakedetect.training.schedules import EarlyStop, Plateau, restore, warmup_lr
from fakedetect.training.sums import AUC_BINS, binary_sums, sums_to_metrics


def test_plateau_follows_keras_rules():
    p = Plateau(patience=2, factor=0.5)
    lrs, lr = [], 1.0
    for loss in [1.0, 0.9, 0.95, 0.91, 0.92, 0.8, 0.85, 0.85]:
        lr = p.step(loss, lr)
        lrs.append(lr)
    # improves, improves, wait 1, wait 2 -> halve, wait 1, improves, wait 1, wait 2 -> halve
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25]
    q = Plateau(patience=1, factor=0.1, min_lr=1e-3)
    assert q.step(1.0, 1e-3) == 1e-3 and q.step(2.0, 1e-3) == 1e-3  # never below min_lr
    assert Plateau(patience=1, factor=0.5).step(1.0, 1.0) == 1.0
    s = Plateau(patience=1, factor=0.5)
    s.step(1.0, 1.0)
    assert s.step(1.0 - 5e-5, 1.0) == 0.5  # an improvement below min_delta (1e-4) is no improvement


def test_early_stop_never_on_a_phase_first_epoch_and_resumes_its_counters():
    e = EarlyStop(patience=2)
    assert [e.step(v, i + 1) for i, v in enumerate([1.0, 1.1, 1.2])] == [False, False, True]
    first = EarlyStop(patience=0)
    assert first.step(5.0, 1) is False  # epoch 1 of a phase
    again = restore(EarlyStop(patience=2), EarlyStop(patience=2, best=1.0, wait=1).state())
    assert again.step(1.5, 4) is True


def test_warmup_is_linear_then_flat():
    assert [warmup_lr(1.0, s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_lr(0.3, 0, 0) == 0.3


def test_validation_sums_add_up_across_workers_and_give_exact_metrics():
    from sklearn.metrics import log_loss, roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000).astype(float)
    p = np.clip(0.5 + (y - 0.5) * rng.uniform(0, 1, 5000) + rng.normal(0, 0.2, 5000), 0, 1)
    # Two "workers" with half each: their sums add to the sums of all.
    total = binary_sums(y[:2000], p[:2000]) + binary_sums(y[2000:], p[2000:])
    m = sums_to_metrics(total)
    assert m["loss"] == pytest.approx(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), rel=1e-9)
    assert m["accuracy"] == pytest.approx(((p >= 0.5) == (y == 1)).mean())
    assert m["auc"] == pytest.approx(roc_auc_score(y, p), abs=2 / AUC_BINS)


def test_a_diverged_model_reports_nan_instead_of_crashing():
    y = np.array([0.0, 1.0, 1.0])
    m = sums_to_metrics(binary_sums(y, np.array([0.2, np.nan, 0.9])))
    assert math.isnan(m["loss"])
    assert sums_to_metrics(binary_sums(np.array([1.0]), np.array([0.9])))["auc"] != sums_to_metrics(
        binary_sums(np.array([1.0]), np.array([0.9])))["auc"]  # one class only: AUC is NaN (NaN != NaN)


def test_calibration_is_fitted_on_a_large_enough_validation():
    from fakedetect.config import load_config
    from fakedetect.metrics import apply_temperature, choose_threshold, fit_temperature
    from fakedetect.training import calibrate_on_validation

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    raw = 1 / (1 + np.exp(-3 * np.where(y == 1, rng.normal(1.0, 1.0, 60), rng.normal(-0.2, 1.0, 60))))
    cal, thr, m = calibrate_on_validation(y, raw.copy(), load_config(None, {}))
    assert "skipped" not in cal and cal["temperature"] == pytest.approx(fit_temperature(y, raw))
    assert cal["temperature"] > 2
    assert thr == pytest.approx(choose_threshold(y, apply_temperature(raw, cal["temperature"]))) and thr != 0.5
    assert cal["val_ece_after"] < cal["val_ece_before"]
    assert m["threshold"] == thr and m["at_0.5"]["threshold"] == 0.5
    _, thr_fpr, _ = calibrate_on_validation(y, raw.copy(), load_config(None, {"target_fpr": 0.1}))
    p = apply_temperature(raw, cal["temperature"])
    assert (p[y == 0] >= thr_fpr).mean() <= 0.1 and thr_fpr > thr
