import math

import numpy as np
import pytest

from fakedetect.metrics import apply_temperature, binary_metrics, choose_threshold, ece, eer, fit_temperature

# A hand-made set: 4 real (0), 4 fake (1).
Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
P = np.array([0.1, 0.3, 0.6, 0.2, 0.8, 0.4, 0.9, 0.7])


def test_metrics_against_hand_computed_values():
    m = binary_metrics(Y, P, 0.5)
    # At 0.5: real predicted [0,0,1,0] -> tn 3, fp 1; fake predicted [1,0,1,1] -> tp 3, fn 1.
    assert m["confusion_matrix"] == {"tn": 3, "fp": 1, "fn": 1, "tp": 3}
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4) == m["accuracy_fake"]
    assert m["specificity"] == pytest.approx(3 / 4) == m["accuracy_real"]
    assert m["f1"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    # AUC by counting pairs: of 16 (real, fake) pairs the fake scores higher in 15; the one loss is
    # (real 0.6, fake 0.4) -> 15/16.
    wins = sum(f > r for r in P[Y == 0] for f in P[Y == 1])
    assert m["roc_auc"] == pytest.approx(wins / 16) == pytest.approx(15 / 16)
    expected_loss = -np.mean(Y * np.log(P) + (1 - Y) * np.log(1 - P))
    assert m["loss"] == pytest.approx(expected_loss)
    cm = m["confusion_matrix"]
    assert sum(cm.values()) == m["n"] == 8 and m["n_real"] == 4 and m["n_fake"] == 4


def test_average_precision_by_hand():
    # Ranking by score: 0.9 F, 0.8 F, 0.7 F, 0.6 R, 0.4 F, ... -> AP = (1 + 1 + 1 + 4/5) / 4
    assert binary_metrics(Y, P)["average_precision"] == pytest.approx((3 + 0.8) / 4)


def test_eer_perfect_and_inverted():
    assert eer(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(0.0)
    assert eer(np.array([0, 0, 1, 1]), np.array([0.9, 0.8, 0.2, 0.1])) == pytest.approx(1.0)
    assert eer(Y, P) == pytest.approx(0.25)  # one real (0.6) called fake, one fake (0.4) missed


def test_ece_by_hand():
    y = np.array([0, 1, 1, 1])
    p = np.array([0.05, 0.95, 0.95, 0.55])
    # 15 bins: {0.05} -> |0.05-0|, {0.95,0.95} -> |0.95-1|, {0.55} -> |0.55-1|; weighted by counts / 4.
    assert ece(y, p) == pytest.approx((0.05 + 2 * 0.05 + 0.45) / 4)


def test_one_class_only_is_not_a_crash():
    m = binary_metrics(np.array([1, 1, 1]), np.array([0.9, 0.2, 0.7]))
    assert m["roc_auc"] is None and m["eer"] is None and m["balanced_accuracy"] is None
    assert m["accuracy"] == pytest.approx(2 / 3) and m["specificity"] is None


def test_threshold_maximises_balanced_accuracy_and_sits_between_scores():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.6, 0.7])
    t = choose_threshold(y, p)
    assert 0.3 < t < 0.35
    assert binary_metrics(y, p, t)["balanced_accuracy"] == 1.0
    assert choose_threshold(np.array([1, 1]), np.array([0.2, 0.3])) == 0.5


def test_threshold_for_target_fpr():
    y = np.array([0] * 10 + [1] * 10)
    p = np.concatenate([np.linspace(0.0, 0.9, 10), np.linspace(0.5, 1.0, 10)])
    t = choose_threshold(y, p, target_fpr=0.1)
    assert (p[y == 0] >= t).mean() <= 0.1
    t0 = choose_threshold(y, p, target_fpr=0.0)
    assert (p[y == 0] >= t0).mean() == 0
    # ...and the most fakes caught within that bound (a threshold of 1 would satisfy the bound and catch none).
    assert (p[y == 1] >= t).mean() == pytest.approx(0.4)
    assert (p[y == 1] >= t0).mean() == pytest.approx(0.2)


def test_temperature_scaling_fixes_overconfidence():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000)
    true_p = np.where(y == 1, rng.uniform(0.5, 0.9, 4000), rng.uniform(0.1, 0.5, 4000))
    y = (rng.uniform(size=4000) < true_p).astype(int)  # labels drawn from calibrated probabilities
    z = np.log(true_p / (1 - true_p))
    over = 1 / (1 + np.exp(-3 * z))  # the same ranking, three times too confident
    t = fit_temperature(y, over)
    assert t == pytest.approx(3, rel=0.2)
    assert ece(y, apply_temperature(over, t)) < ece(y, over) / 2
    assert apply_temperature(np.array([0.5]), 7.0)[0] == pytest.approx(0.5)
    assert math.isfinite(fit_temperature(np.array([0, 1]), np.array([0.0, 1.0])))


def test_threshold_prefers_half_when_it_is_among_the_best():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.01, 0.02, 0.9, 0.95])  # perfectly separated: any cut in (0.02, 0.9] is best
    assert choose_threshold(y, p) == 0.5
