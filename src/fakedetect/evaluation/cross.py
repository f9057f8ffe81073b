"""The cross-dataset table: every run scored on every test set (train on one source, test on all: the table the
field's benchmarks publish), with the share of each set that the run's domain check calls unlike its training.

One cell per (run, test set): ROC AUC, accuracy at the run's threshold, the share flagged out of domain, and the
number of images. Test images a run was trained or validated on (byte-identical files) are left out of its cells
and counted, so that a cell is always a held-out figure.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fakedetect.atomic import atomic_path, fresh_dir, write_json, write_text
from fakedetect.data.archive import set_name
from fakedetect.data.layout import unique_names
from fakedetect.evaluation.evaluate import load_test_split, score, seen_in_training
from fakedetect.evaluation.report import cross_report
from fakedetect.metrics import binary_metrics
from fakedetect.run import Run, load_run
from fakedetect.runfolder import CROSS_CSV, CROSS_JSON, CROSS_MD, CROSS_PLOT, REPORT_FILE

log = logging.getLogger(__name__)

MEASURES = {"roc_auc": "ROC AUC", "accuracy": "accuracy", "out_of_domain": "out of domain"}


@dataclass
class Cell:
    run: str
    data: str
    n: int  # images scored in this cell (held out from the run)
    n_seen: int  # test images left out: the run trained or validated on them
    roc_auc: float | None
    accuracy: float | None
    out_of_domain: float | None  # share flagged unlike the training images (None: the run has no domain model)
    # Per image, for further analysis (benchmarks): labels, calibrated P(fake), domain distance.
    y: np.ndarray = field(repr=False, default=None)
    prob: np.ndarray = field(repr=False, default=None)
    distance: np.ndarray | None = field(repr=False, default=None)


def run_name(run: Run) -> str:
    """A run's row label: its folder name."""
    return run.path.name


def cross_scores(run_dirs: list[Path], datas: list[Path], batch_size: int = 64, max_per_class: int | None = None,
                 names: list[str] | None = None, engine: str = "tensorflow"
                 ) -> tuple[list[Cell], dict[str, list[str]], list[str]]:
    """Scores every test set with every run. Returns (cells, run name -> training sources, test set names).

    Args:
        names: the test sets' column names (default: from their paths; give the archives' names when ``datas``
            are the folders they were extracted to).
    """
    names = unique_names(names or [set_name(d) for d in datas])
    splits = {}
    for name, data in zip(names, datas, strict=True):
        splits[name] = load_test_split(data, max_per_class=max_per_class)
    cells, sources = [], {}
    for run_dir in run_dirs:
        run = load_run(run_dir, engine)
        rname = unique_names(list(sources) + [run_name(run)])[-1]
        sources[rname] = run.card.source_names()
        for dname, split in splits.items():
            log.info(f"{rname} on {dname}: {len(split)} images")
            s = score(run, split, batch_size)
            found = seen_in_training(run, s.split)
            seen = found[0] | found[1] if found is not None else np.zeros(len(s.split), bool)
            keep = ~seen
            y, prob = s.y[keep], s.prob[keep]
            dist = s.distance[keep] if s.distance is not None else None
            m = binary_metrics(y, prob, run.threshold) if len(y) else {"roc_auc": None, "accuracy": None}
            ood = float((~run.domain.in_domain(dist)).mean()) if dist is not None and len(y) else None
            if seen.any():
                log.warning(f"  {int(seen.sum())} of {len(seen)} images of {dname} were in {rname}'s training or "
                            "validation data: left out of its cell")
            cells.append(Cell(rname, dname, int(len(y)), int(seen.sum()), m["roc_auc"], m["accuracy"], ood,
                              y, prob, dist))
    return cells, sources, names


def long_table(cells: list[Cell], sources: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame([{"run": c.run, "trained on": " + ".join(sources[c.run]), "test set": c.data,
                          "images": c.n, "seen in training (left out)": c.n_seen, "roc_auc": c.roc_auc,
                          "accuracy": c.accuracy, "out_of_domain": c.out_of_domain} for c in cells])


def pivot(table: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Rows = runs (with their training sources), columns = test sets, cells = ``measure``."""
    rows = table.assign(run=table["run"] + " (" + table["trained on"] + ")")
    return rows.pivot(index="run", columns="test set", values=measure).reindex(
        columns=list(dict.fromkeys(table["test set"])), index=list(dict.fromkeys(rows["run"])))


def markdown(table: pd.DataFrame) -> str:
    """One Markdown table: each cell "AUC / accuracy / out of domain"."""
    def cell(r) -> str:
        parts = [f"{r.roc_auc:.3f}" if pd.notna(r.roc_auc) else "n/a",
                 f"{r.accuracy:.1%}" if pd.notna(r.accuracy) else "n/a",
                 f"{r.out_of_domain:.0%} OOD" if pd.notna(r.out_of_domain) else "OOD n/a"]
        return " / ".join(parts) + (f" ({r.images})" if r.images else " (no unseen image)")

    t = table.assign(cell=[cell(r) for r in table.itertuples()])
    grid = pivot(t, "cell")
    lines = ["| run (trained on) | " + " | ".join(grid.columns) + " |", "|---" * (len(grid.columns) + 1) + "|"]
    lines += [f"| {run} | " + " | ".join(str(v) for v in row) + " |" for run, row in grid.iterrows()]
    return ("Each cell: ROC AUC / accuracy at the run's threshold / share flagged out of domain (images).\n\n"
            + "\n".join(lines) + "\n")


def write_cross(out_dir: Path, cells: list[Cell], sources: dict[str, list[str]], overwrite: bool = False) -> Path:
    """cross.csv, cross.md, cross.png (heatmaps) and report.html in ``out_dir``; cross.json last."""
    from fakedetect.plots import plot_cross

    fresh_dir(out_dir, overwrite)
    table = long_table(cells, sources)
    with atomic_path(out_dir / CROSS_CSV, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)
    md = markdown(table)
    write_text(out_dir / CROSS_MD, md)
    fig = plot_cross({label: pivot(table, m) for m, label in MEASURES.items()}, out_dir / CROSS_PLOT)
    cross_report(out_dir / REPORT_FILE, table, {label: pivot(table, m) for m, label in MEASURES.items()}, fig)
    write_json(out_dir / CROSS_JSON, {"created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                                        "cells": table.astype(object).where(table.notna(), None).to_dict(
                                            orient="records"), "runs": sources})
    return out_dir

