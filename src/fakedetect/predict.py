"""`fakedetect predict`: score image files and folders with a trained run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fakedetect.atomic import write_csv, write_json
from fakedetect.data.checks import check_images
from fakedetect.data.layout import list_files
from fakedetect.errors import ConfigError, DataError
from fakedetect.run import Run


@dataclass
class PredictResult:
    table: pd.DataFrame  # path, prob_fake, prob_real, label, in_domain, domain_distance, engine
    unreadable: list[tuple[str, str]]


def expand_inputs(inputs: list[str | Path]) -> list[Path]:
    """Files as given, folders recursively (sorted); a path that does not exist is an error."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(list_files(p))
        elif p.exists() or p.is_symlink():
            out.append(p)
        else:
            raise DataError(f"no such file or folder: {p}")
    return out


def predict_paths(run: Run, inputs: list[str | Path], batch_size: int = 64,
                  tta: bool = False) -> PredictResult:
    """Scores every readable image under ``inputs``; unreadable files are reported, not fatal.

    ``tta``: score each image with its mirror image too (twice the compute; see ``evaluate --tta``).
    """
    files = expand_inputs(inputs)
    infos = check_images(files, tf_verify=True, what="files")
    ok = [i for i in infos if i.error is None]
    scores = run.score(paths=[i.path for i in ok], pillow_only=[not i.tf_decodable for i in ok],
                       batch_size=batch_size, tta=tta)
    bad = [(i.path, i.error) for i in infos if i.error is not None] + scores.skipped
    table = scores.table().assign(engine=run.engine)
    return PredictResult(table, bad)


def write_predictions(result: PredictResult, out: str | Path, threshold: float) -> Path:
    """Writes a .csv or .json atomically (never a truncated file that looks complete)."""
    out = Path(out)
    if out.suffix.lower() == ".json":
        write_json(out, {"threshold": threshold, "predictions": result.table.to_dict(orient="records"),
                         "unreadable": [{"path": p, "reason": r} for p, r in result.unreadable]})
    elif out.suffix.lower() == ".csv":
        write_csv(out, result.table)  # file names neutralised: no spreadsheet formula, no forged line
    else:
        raise ConfigError(f"--out must end in .csv or .json, got {out.name}")
    return out
