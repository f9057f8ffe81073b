"""Figures written as PNG files (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from fakedetect.atomic import atomic_path  # noqa: E402


def save_figure(fig, path: str | Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_training_curves(history: pd.DataFrame, path: str | Path) -> Path:
    """Loss, accuracy and AUC per epoch for training and validation, with the fine-tuning start marked."""
    metrics = [m for m in ("loss", "accuracy", "auc") if m in history and f"val_{m}" in history]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.6), squeeze=False)
    epochs = history["epoch"]
    finetune = history.loc[history["phase"] == "finetune", "epoch"]
    for ax, m in zip(axes[0], metrics, strict=True):
        ax.plot(epochs, history[m], "o-", label="train", ms=3)
        ax.plot(epochs, history[f"val_{m}"], "o-", label="validation", ms=3)
        if len(finetune):
            ax.axvline(finetune.min() - 0.5, color="grey", ls="--", lw=1, label="fine-tuning starts")
        ax.set_title(m)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Training curves")
    return save_figure(fig, path)


def plot_class_distribution(counts: dict[str, dict[str, int]], path: str | Path) -> Path:
    """Grouped bar chart: images per class in each split."""
    import seaborn as sns

    rows = [{"split": s, "class": c, "images": n} for s, cs in counts.items() for c, n in cs.items()]
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * max(1, df["split"].nunique()), 3.6))
    sns.barplot(df, x="split", y="images", hue="class", palette={"real": "#2b8cbe", "fake": "#e34a33"}, ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fontsize=8)
    ax.set_title("Images per class")
    return save_figure(fig, path)


def plot_confusion(cm: dict, path: str | Path) -> Path:
    """Confusion matrix as counts and row-normalised, side by side (seaborn heatmaps)."""
    import numpy as np
    import seaborn as sns

    m = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m, dtype=float), where=rows > 0)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    labels = ["real", "fake"]
    sns.heatmap(m, annot=True, fmt="d", cmap="Blues", cbar=False, xticklabels=labels, yticklabels=labels, ax=axes[0])
    sns.heatmap(norm, annot=True, fmt=".3f", cmap="Blues", vmin=0, vmax=1, cbar=False, xticklabels=labels,
                yticklabels=labels, ax=axes[1])
    axes[0].set_title("counts")
    axes[1].set_title("normalised by true class")
    for ax in axes:
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    return save_figure(fig, path)


def plot_roc(y, p, auc: float | None, path: str | Path) -> Path:
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    if auc is not None:
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, lw=2, label=f"AUC = {auc:.4f}")
    else:
        ax.text(0.5, 0.5, "AUC undefined:\nonly one class present", ha="center", va="center")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="chance")
    ax.set_xlabel("false-positive rate (real called fake)")
    ax.set_ylabel("true-positive rate (fake caught)")
    ax.set_title("ROC curve")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_pr(y, p, ap: float | None, path: str | Path) -> Path:
    from sklearn.metrics import precision_recall_curve

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    if ap is not None:
        prec, rec, _ = precision_recall_curve(y, p)
        ax.plot(rec, prec, lw=2, label=f"AP = {ap:.4f}")
        ax.axhline(float(sum(y)) / len(y), ls="--", color="grey", lw=1, label="chance")
        ax.legend(loc="lower left")
    else:
        ax.text(0.5, 0.5, "undefined:\nonly one class present", ha="center", va="center")
    ax.set_xlabel("recall (fake)")
    ax.set_ylabel("precision (fake)")
    ax.set_title("Precision-recall curve")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_reliability(bins_cal: list[dict], bins_raw: list[dict], ece_cal: float, ece_raw: float,
                     path: str | Path) -> Path:
    """Reliability diagram: fraction fake against mean predicted P(fake), before and after calibration."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    for bins, label, style in ((bins_raw, f"uncalibrated (ECE {ece_raw:.4f})", "s:"),
                               (bins_cal, f"calibrated (ECE {ece_cal:.4f})", "o-")):
        pts = [(b["mean_prob"], b["frac_fake"]) for b in bins if b["n"] > 0]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, style, label=label, ms=4)
    ax.set_xlabel("mean predicted P(fake)")
    ax.set_ylabel("fraction fake")
    ax.set_title("Reliability diagram")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_score_histogram(y, p, threshold: float, path: str | Path) -> Path:
    import numpy as np

    y, p = np.asarray(y), np.asarray(p)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    bins = np.linspace(0, 1, 41)
    ax.hist(p[y == 0], bins=bins, alpha=0.6, label="real images", color="#2b8cbe")
    ax.hist(p[y == 1], bins=bins, alpha=0.6, label="fake images", color="#e34a33")
    ax.axvline(threshold, color="black", lw=1, ls="--", label=f"threshold {threshold:.3f}")
    ax.set_yscale("log")
    ax.set_xlabel("P(fake)")
    ax.set_ylabel("images (log scale)")
    ax.set_title("Scores by true class")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_robustness(table: pd.DataFrame, path: str | Path) -> Path:
    """AUC and accuracy of the model under each perturbation."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, col, title in ((axes[0], "roc_auc", "ROC AUC"), (axes[1], "accuracy", "accuracy")):
        vals = table[col].astype(float)
        ax.barh(table["perturbation"], vals, color=["#2b8cbe" if p == "clean" else "#fdae6b"
                                                    for p in table["perturbation"]])
        for i, v in enumerate(vals):
            ax.text(min(v, 1.0), i, f" {v:.3f}", va="center", fontsize=8)
        ax.set_xlim(0.0, 1.08)
        ax.axvline(0.5, color="grey", ls="--", lw=1)
        ax.invert_yaxis()
        ax.set_title(title)
    fig.suptitle("Robustness: the same test images, perturbed identically for both classes")
    return save_figure(fig, path)


def plot_cross(grids: dict[str, pd.DataFrame], path: str | Path) -> Path:
    """Heatmaps of the cross-dataset table: rows = runs, columns = test sets, one panel per measure."""
    import numpy as np
    import seaborn as sns

    first = next(iter(grids.values()))
    width = 1.6 + 1.3 * len(first.columns)
    fig, axes = plt.subplots(1, len(grids), figsize=(width * len(grids), 1.4 + 0.55 * len(first)), squeeze=False)
    for i, (ax, (title, grid)) in enumerate(zip(axes[0], grids.items(), strict=True)):
        values = grid.astype(float)
        fmt = ".3f" if title == "ROC AUC" else ".0%"
        cmap = "RdYlGn" if title != "out of domain" else "Greys"
        sns.heatmap(values, annot=True, fmt=fmt, vmin=0.0 if title == "out of domain" else 0.5, vmax=1.0,
                    cmap=cmap, cbar=False, ax=ax, mask=np.isnan(values.to_numpy()),
                    annot_kws={"fontsize": 9}, linewidths=0.5, linecolor="white")
        ax.set_title(title)
        ax.set_xlabel("test set")
        ax.set_ylabel("run (trained on)" if i == 0 else "")
        if i:
            ax.set_yticklabels([])
        ax.tick_params(axis="x", rotation=30)
    height = fig.get_size_inches()[1]
    fig.suptitle("Cross-dataset: every run on every test set (held-out images only)", y=1.0 + 0.3 / height)
    return save_figure(fig, path)
