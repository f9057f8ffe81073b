"""The model card: what a run folder's ``model.json`` says about its model, written and read in one place.

Every module that needs a fact about a trained model (its input size, threshold, temperature, training domain)
reads it from a :class:`ModelCard`, never from the JSON by string key.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from fakedetect import CLASS_NAMES, __version__
from fakedetect.atomic import write_json
from fakedetect.errors import RunError
from fakedetect.framing import COMBINE_RULES, CROP_COUNTS, INPUT_MODES, Framing
from fakedetect.generators import claims
from fakedetect.runfolder import CARD_FILE

REQUIRED = ("image_size", "threshold")
# Keys of ``ModelCard.data`` that hold paths of the training machine (see ``ModelCard.public_dict``).
PRIVATE_DATA_KEYS = ("data_root", "spec", "sources")


@dataclass
class ModelCard:
    """The facts of one trained model (fields in the order model.json lists them)."""
    fakedetect_version: str = __version__
    created: str = ""
    backbone: str = ""
    weights: str = ""
    image_size: int = 0
    # The input mode (see fakedetect.framing): "resize", or "crop" with its scoring crops and combine rule.
    input: str = "resize"
    crops: int = 1
    crop_combine: str = "mean"
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    positive_class: str = "fake"
    output: str = "probability of fake"
    threshold: float = 0.5  # on calibrated P(fake): fake when at least this
    threshold_rule: str = ""
    calibration: dict = field(default_factory=lambda: {"method": "none", "temperature": 1.0})
    strategy: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)  # data_root, train/val counts, val_source, skipped, ...
    domain: dict | None = None  # the training domain (see fakedetect.domain); None before domain models
    generators: dict = field(default_factory=dict)  # training source -> the generators of its fakes
    # What benchmarks/leave_one_out.py measured for the recipe this run was trained with, unchanged (None: not
    # measured, or the run changed the recipe): the figure for generators it has not seen.
    generalisation: dict | None = None
    val_metrics: dict = field(default_factory=dict)
    epochs_run: dict = field(default_factory=dict)
    train_seconds: float | None = None

    @property
    def temperature(self) -> float:
        return float(self.calibration.get("temperature", 1.0))

    @property
    def framing(self) -> Framing:
        """How an image becomes this model's input (resized, or native-resolution crops)."""
        return Framing(self.image_size, self.input, self.crops, self.crop_combine)

    def source_names(self) -> list[str]:
        """The names of the data sets the model was trained on ([] when the card does not say)."""
        data = self.data or {}
        if data.get("sources"):
            return [s["name"] for s in data["sources"]]
        if data.get("spec") and all(s.get("name") for s in data["spec"]):  # every run since issue 12
            return [s["name"] for s in data["spec"]]
        root = data.get("data_root")
        return [Path(r).name for r in (root if isinstance(root, list) else [root])] if root else []

    def training_domain(self) -> str:
        """One line on what the model was trained on, e.g. "cifake-train (32 px, JPEG)"; "" when unknown."""
        dom = self.domain or {}
        names = self.source_names()
        if not names:
            return ""
        facts = []
        side = dom.get("image_side_px")
        if side:
            facts.append(f"{side['min']} px" if side["min"] == side["max"] else f"{side['min']}-{side['max']} px")
        formats = sorted({f for per in (dom.get("formats") or {}).values() for f in per})
        if formats:
            facts.append(", ".join(formats))
        return ", ".join(names) + (f" ({'; '.join(facts)})" if facts else "")

    def claims(self) -> dict:
        """What the model has seen and what it measured on generators it had not seen (see generators.claims)."""
        return claims(self.generators, self.generalisation)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def public_dict(self) -> dict:
        """The card as it may leave the machine (the API, an export's sidecar): the training data named by its
        source names and a weights file by its name, never by a path of this machine. ``model.json`` itself keeps
        the paths (resume needs them).
        """
        d = self.to_dict()
        private = _paths_in(d["data"]) + _paths_in((d["domain"] or {}).get("sources"))
        if "/" in self.weights or "\\" in self.weights:  # a weights file of the user's: its name alone
            private.append(self.weights)
        names = self.source_names()
        d["data"] = {k: v for k, v in d["data"].items() if k not in PRIVATE_DATA_KEYS}
        d["data"]["sources"] = [{k: v for k, v in s.items() if k != "path"} for s in self.data.get("sources", [])] \
            or [{"name": n} for n in names]
        if d["domain"] is not None:
            d["domain"]["sources"] = names
        return _scrub(d, sorted(set(private), key=len, reverse=True))

    def write(self, run_dir: str | Path) -> Path:
        path = Path(run_dir) / CARD_FILE
        write_json(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, d: dict, where: str = CARD_FILE) -> ModelCard:
        """Raises RunError when a required field is missing or unusable; unknown fields (a newer version's)
        are ignored."""
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            raise RunError(f"{where} lacks {', '.join(missing)}: not a complete fakedetect run")
        known = {f.name for f in dataclasses.fields(cls)}
        card = cls(**{k: v for k, v in d.items() if k in known})
        if not isinstance(card.image_size, int) or card.image_size < 1 or not 0 <= float(card.threshold) <= 1:
            raise RunError(f"{where}: image_size {card.image_size!r} / threshold {card.threshold!r} are unusable")
        if card.input not in INPUT_MODES or card.crops not in CROP_COUNTS or type(card.crops) is not int \
                or card.crop_combine not in COMBINE_RULES:
            raise RunError(f"{where}: input {card.input!r} / crops {card.crops!r} / crop_combine "
                           f"{card.crop_combine!r} are unusable")
        if list(card.class_names) != list(CLASS_NAMES):
            raise RunError(f"{where}: classes {card.class_names} are not fakedetect's {list(CLASS_NAMES)}")
        return card

    @classmethod
    def read(cls, run_dir: str | Path) -> ModelCard:
        path = Path(run_dir) / CARD_FILE
        try:
            return cls.from_dict(json.loads(path.read_text()), str(path))
        except (OSError, ValueError) as e:
            if isinstance(e, RunError):
                raise
            raise RunError(f"{path} is unreadable ({e})") from None


def _paths_in(value) -> list[str]:
    """Every path string under a card's data facts: a "path" entry, a data_root string or list of them."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, dict):
        return [p for k, v in value.items() if k in ("path", *PRIVATE_DATA_KEYS) for p in _paths_in(v)]
    if isinstance(value, list):
        return [p for v in value for p in _paths_in(v)]
    return []


def _scrub(value, paths: list[str]):
    """``value`` with every occurrence of one of ``paths`` inside a string replaced by the path's last name."""
    if isinstance(value, str):
        for p in paths:
            value = value.replace(p, Path(p).name)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, paths) for v in value]
    return value
