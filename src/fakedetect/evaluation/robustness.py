"""`fakedetect robustness`: re-score a test set under perturbations applied identically to both classes.

A model that learned the file format, or the absence of compression, rather than real vs fake collapses here
(the "re-encode both classes as JPEG 90" row is the format-bias check).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fakedetect.atomic import atomic_path, fresh_dir, write_json
from fakedetect.data.transforms import blur, downscale, jpeg_reencode, perturbations  # noqa: F401 - re-exported
from fakedetect.errors import ConfigError
from fakedetect.evaluation.evaluate import full_metrics, load_test_split, plan_out_dir, score
from fakedetect.run import load_run
from fakedetect.runfolder import ROBUSTNESS_CSV, ROBUSTNESS_JSON, ROBUSTNESS_PLOT

log = logging.getLogger(__name__)



@dataclass
class RobustnessResult:
    out_dir: Path
    table: pd.DataFrame


def robustness(run_dir: str | Path, data: str | Path, out: str | Path | None = None, overwrite: bool = False,
               batch_size: int = 64, only: list[str] | None = None, engine: str = "tensorflow") -> RobustnessResult:
    """Scores the test set once per perturbation; writes robustness.csv, robustness.json and robustness.png."""
    from fakedetect.plots import plot_robustness

    run = load_run(run_dir, engine)
    out_dir = plan_out_dir(Path(run_dir), data, out, overwrite, kind="robustness")
    split = load_test_split(data)
    todo = perturbations()
    if only:
        unknown = [n for n in only if n not in todo]
        if unknown:
            raise ConfigError(f"unknown perturbation(s) {', '.join(unknown)}; known: {', '.join(todo)}")
        todo = {n: todo[n] for n in ["clean", *only] if n in todo}
    fresh_dir(out_dir, overwrite)
    rows = []
    for name, fn in todo.items():
        m = full_metrics(run, score(run, split, batch_size, perturb=fn))
        rows.append({"perturbation": name, "roc_auc": m["roc_auc"], "accuracy": m["accuracy"],
                     "balanced_accuracy": m["balanced_accuracy"], "accuracy_real": m["accuracy_real"],
                     "accuracy_fake": m["accuracy_fake"], "eer": m["eer"], "ece": m["ece"], "n": m["n"]})
        auc = "undefined" if m["roc_auc"] is None else f"{m['roc_auc']:.4f}"
        log.info(f"  {name:22s} AUC {auc}  accuracy {m['accuracy']:.4f}")
    table = pd.DataFrame(rows)
    with atomic_path(out_dir / ROBUSTNESS_CSV) as tmp:
        table.to_csv(tmp, index=False)
    plot_robustness(table.fillna(0.5), out_dir / ROBUSTNESS_PLOT)
    write_json(out_dir / ROBUSTNESS_JSON, {"run_dir": str(run.path.resolve()), "data": str(Path(data).resolve()),
                                              "threshold": run.threshold, "engine": run.engine, "results": rows})
    return RobustnessResult(out_dir, table)
