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
