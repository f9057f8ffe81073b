"""What made the fakes a model has seen, and what it measured on generators it had not seen: the claims a card
makes next to every verdict.

A model is only known to work on the kinds of images it was trained on. Its card names the generators of its
training fakes (from this manifest of the shared sources, or a data source's own ``generators:`` list) and, when
it was trained with a shipped recipe that ``benchmarks/leave_one_out.py`` measured, that recipe's ROC AUC on a
source left out of training: the one figure that says what to expect from a generator it has never seen.
"""

from __future__ import annotations

import json
from pathlib import Path

# Recipe -> what benchmarks/leave_one_out.py measured for it (written by hand from its table, with the command).
MEASURED_FILE = Path(__file__).parent / "configs" / "measured.json"

# Shared source (its name, or the start of it) -> the generators of its fakes.
MANIFEST: dict[str, list[str]] = {
    "cifake": ["Stable Diffusion 1.4"],
    "faces": ["StyleGAN2"],
    "sd-coco": ["Stable Diffusion 1.x (DiffusionDB)"],
}
NOT_STATED = "not stated"


def generators_of(source: str, declared: list[str] | None = None) -> list[str]:
    """The generators of a training source's fakes: declared in its data spec, else the manifest's, else
    ["not stated"]."""
    if declared:
        return [str(g) for g in declared]
    for key, gens in MANIFEST.items():
        if source == key or source.startswith(key + "-") or source.startswith(key + "_"):
            return list(gens)
    return [NOT_STATED]


def measured(recipe: str | None) -> dict | None:
    """What the leave-one-source-out benchmark measured for a shipped recipe (None: not measured)."""
    if not recipe or not MEASURED_FILE.is_file():
        return None
    return json.loads(MEASURED_FILE.read_text(encoding="utf-8")).get(recipe)


def claims(generators: dict[str, list[str]], generalisation: dict | None) -> dict:
    """What the API and the page say next to every verdict: the generators of the training fakes and the figure
    measured on generators the recipe had not seen (or that it was not measured)."""
    seen = sorted({g for gens in generators.values() for g in gens if g != NOT_STATED})
    unstated = [s for s, gens in generators.items() if gens == [NOT_STATED]]
    out = {"seen_generators": seen, "sources_without_generators": unstated, "unseen_generator_auc": None}
    if generalisation:
        out["unseen_generator_auc"] = generalisation["mean_left_out_auc"]
        out["unseen_generator_note"] = (
            f"ROC AUC {generalisation['mean_left_out_auc']:.2f} on a source left out of training (mean over "
            f"{len(generalisation['left_out'])} sources; recipe {generalisation['recipe']}, "
            f"{generalisation['measured']}): verdicts on images from generators it has not seen are far less "
            "reliable than its validation figures")
    else:
        out["unseen_generator_note"] = ("not measured: how this model does on generators it has not seen is "
                                        "unknown; expect it to be much worse than its validation figures")
    return out
