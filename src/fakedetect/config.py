"""Typed training configuration: dataclass defaults, overlaid by a YAML file, overlaid by CLI flags.

All validation lives in :func:`validate`; errors name the field and the allowed values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fakedetect.errors import ConfigError  # noqa: F401 - re-exported
from fakedetect.framing import COMBINE_RULES, CROP_COUNTS, INPUT_MODES, Framing
from fakedetect.models.registry import BACKBONES

PRESET_DIR = Path(__file__).parent / "configs"
STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker")  # tf.distribute (see training/cluster.py)
SCHEDULES = ("plateau", "cosine")  # see training/schedules.py
DEMO_PER_CLASS = 5000  # the demo trains its recipe (configs/demo.yaml) on this many images per class (~4 min)


@dataclass
class AugmentConfig:
    """Augmentation applied to training images only (never to validation or test data)."""
    flip: bool = True
    rotation: float = 0.05  # fraction of a full turn, as keras.layers.RandomRotation
    zoom: float = 0.1
    contrast: float = 0.1
    # Robustness augmentations, applied to both classes alike (CNNDetection / DeepfakeBench recipe).
    jpeg_prob: float = 0.0
    jpeg_quality: tuple[int, int] = (30, 100)
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)


@dataclass
class TrainConfig:
    """Everything that defines a training run. Written to the run folder as ``config.yaml``."""
    # Training data (optional; --data on the command line replaces it): a list of sources, each a path or
    # {path, weight, max_per_class, name}; sources are carved and mixed by weight (see training/inputs.py).
    data: list | None = None
    recipe: str | None = None  # the shipped preset it starts from (set by load_config; see card.generalisation)
    backbone: str = "efficientnet-b4"
    weights: str = "imagenet"  # "imagenet", "none", or a path to a weights file
    image_size: int | None = None  # None: the backbone's native size (see resolve_image_size)
    # How an image becomes the model's input (see framing.py): "resize" to image_size, or "crop": native-resolution
    # image_size crops (one random crop in training; `crops` fixed ones in scoring, their logits combined by
    # `crop_combine`). Crop mode turns the resampling augmentations (rotation, zoom) off.
    input: str = "resize"
    crops: int = 5  # 1 (centre), 5 (corners + centre) or 9 (3x3 grid)
    crop_combine: str = "mean"  # "mean" or "max" of the crops' logits
    batch_size: int = 32
    epochs_frozen: int = 5
    epochs_finetune: int = 10
    cache_features: bool = True  # frozen phase: backbone features computed once, not every epoch
    lr_frozen: float = 1e-3
    lr_finetune: float = 1e-5
    unfreeze: int | str = 20  # top N backbone layers, or a block name prefix such as "block6"
    dropout: float = 0.2
    stochastic_depth: bool = True  # the backbone's per-block dropout while training (False: none)
    # Fine-tune the unfrozen range's BatchNormalization too: scale and offset trained, statistics taken from the
    # training batches (and their moving averages updated); False keeps ImageNet's statistics (small batches).
    # One replica only (each would keep its own statistics). With ema_decay, the averaged weights are validated
    # with the raw weights' moving statistics (Keras averages trainable variables only).
    train_batchnorm: bool = False
    val_fraction: float = 0.1
    max_per_class: int | None = None
    seed: int = 42
    early_stopping_patience: int = 3
    reduce_lr_patience: int = 1
    reduce_lr_factor: float = 0.2
    # "plateau": the rate is cut when validation loss stalls (open-ended runs, early stopping applies);
    # "cosine": warm-up, then cosine decay to min_lr_ratio x the rate at each phase's last step (a fixed budget).
    schedule: str = "plateau"
    min_lr_ratio: float = 0.01
    warmup_steps: int | None = None  # None: 200 steps when rates are scaled for several replicas, else none
    ema_decay: float | None = None  # e.g. 0.999: also keep a moving average of the weights; the better is kept
    label_smoothing: float = 0.0  # targets 0/1 become s/2 and 1 - s/2 while training
    # Mixup: each training batch (after augmentation) becomes lam x itself + (1 - lam) x a shuffle of itself, labels
    # alike, lam ~ Beta(mixup, mixup), one per batch; 0: off. Image streams only (not the frozen phase's features).
    mixup: float = 0.0
    # Decoupled weight decay (AdamW): each step, kernels shrink by learning rate x weight_decay (biases and other
    # 1-D variables are left alone); 0: plain Adam.
    weight_decay: float = 0.0
    # Progressive resizing: image sizes of the first fine-tuning epochs (e.g. [64, 64, 80]); the later epochs,
    # validation and the saved model use image_size.
    finetune_sizes: list[int] | None = None
    target_fpr: float | None = None  # None: threshold maximising balanced accuracy on validation data
    strategy: str = "auto"  # auto | one-device | mirrored | multi-worker (tf.distribute)
    devices: list[str] | None = None  # for one-device / mirrored, e.g. ["/gpu:0", "/gpu:1"]
    scale_lr: bool = True  # multiply learning rates by the number of replicas (batch_size is per replica)
    mixed_precision: bool = False  # float16 compute on GPUs
    class_weights: str = "auto"  # "auto": balanced weights when classes differ by more than 10%; or "none"
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @property
    def framing(self) -> Framing:
        """The input mode (needs a resolved image_size)."""
        return Framing(self.image_size, self.input, self.crops if self.input == "crop" else 1, self.crop_combine)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["augment"]["jpeg_quality"] = list(self.augment.jpeg_quality)
        d["augment"]["blur_sigma"] = list(self.augment.blur_sigma)
        return d


def _overlay(obj: Any, values: dict[str, Any], where: str) -> None:
    known = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key not in known:
            raise ConfigError(f"unknown setting '{where}{key}'; known: {', '.join(sorted(known))}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"'{where}{key}' must be a mapping, got {value!r}")
            _overlay(current, value, f"{where}{key}.")
        else:
            if isinstance(current, tuple) and isinstance(value, list):
                value = tuple(value)
            setattr(obj, key, value)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Builds a config from defaults, then a YAML file, then ``overrides`` (None values are ignored).

    Args:
        path: a YAML file, or the name of a shipped preset (``default``, ``cpu``, ...).
        overrides: flat settings, typically from CLI flags.

    Raises:
        ConfigError: a file that does not exist, an unknown key or an invalid value.
    """
    cfg = TrainConfig()
    if path is not None:
        resolved = resolve_config_path(path)
        for layer in read_config_file(resolved):
            _overlay(cfg, layer, "")
        if resolved.resolve().parent == PRESET_DIR.resolve() and cfg.recipe is None:
            cfg.recipe = resolved.stem
    if overrides:
        _overlay(cfg, {k: v for k, v in overrides.items() if v is not None}, "")
    validate(cfg)
    return cfg


def recipe_intact(cfg: TrainConfig) -> bool:
    """Whether a resolved config trains as its shipped recipe does (seed, caps and devices aside; on the recipe's
    own data list when it has one): what a figure measured for the recipe may be claimed for."""
    if not cfg.recipe:
        return False
    try:
        ref = resolve(load_config(cfg.recipe)).to_dict()
    except ConfigError:
        return False
    mine = cfg.to_dict()
    ignore = {"data", "max_per_class", "seed", "strategy", "devices", "scale_lr", "recipe"}
    same_data = not ref["data"] or [_path_of(d) for d in mine["data"] or []] == [_path_of(d) for d in ref["data"]]
    return same_data and all(mine[k] == v for k, v in ref.items() if k not in ignore)


def _path_of(source) -> str:
    return source["path"] if isinstance(source, dict) else str(source)


def resolve(cfg: TrainConfig) -> TrainConfig:
    """The config as it trains, once final (after the command line's flags): the input size resolved
    (:func:`resolve_image_size`) and a backbone trained whole from the start set up for it
    (:func:`resolve_backbone`). What ``config.yaml`` then holds."""
    return resolve_input(resolve_backbone(resolve_image_size(cfg)))


def resolve_input(cfg: TrainConfig) -> TrainConfig:
    """Crop mode trains on crops that are never resampled: rotation and zoom are turned off (logged)."""
    import logging

    if cfg.input != "crop" or (cfg.augment.rotation == 0 and cfg.augment.zoom == 0):
        return cfg
    logging.getLogger(__name__).info(f"input: crop keeps every pixel as it is: augment.rotation "
                                     f"{cfg.augment.rotation} and augment.zoom {cfg.augment.zoom} turned off")
    return dataclasses.replace(cfg, augment=dataclasses.replace(cfg.augment, rotation=0.0, zoom=0.0))


def resolve_backbone(cfg: TrainConfig) -> TrainConfig:
    """A backbone trained whole (``npr``, ``npr-lite0``: ``train_all`` in the registry) has no frozen phase: its
    epochs all fine-tune (``epochs_frozen`` added to ``epochs_finetune``), at ``lr_frozen``'s rate (the rate for new
    layers), every layer from the stem on, BatchNormalization included; without ImageNet weights (``npr``),
    ``imagenet`` means none. Each change is logged; other backbones come back unchanged."""
    import logging

    spec = BACKBONES[cfg.backbone]
    if not spec.train_all:
        return cfg
    changes = {"epochs_frozen": 0, "epochs_finetune": cfg.epochs_frozen + cfg.epochs_finetune,
               "lr_finetune": cfg.lr_frozen, "unfreeze": "stem", "train_batchnorm": True}
    if not spec.pretrained and cfg.weights.lower() == "imagenet":
        changes["weights"] = "none"
    changes = {k: v for k, v in changes.items() if getattr(cfg, k) != v}
    if changes:
        logging.getLogger(__name__).info(
            f"{cfg.backbone} trains whole from the start: " + ", ".join(f"{k} {v}" for k, v in changes.items()))
    return dataclasses.replace(cfg, **changes)


def resolve_image_size(cfg: TrainConfig) -> TrainConfig:
    """The config with its input size resolved: a null ``image_size`` becomes the backbone's native size (as
    timm's ``resolve_data_config`` does). The one place that default is applied, once the config is final (after
    the command line's ``--backbone``): the model is built at that number, and ``config.yaml`` and the model card
    say it. A config that already holds a size comes back as it is."""
    if cfg.image_size is not None:
        return cfg
    return dataclasses.replace(cfg, image_size=BACKBONES[cfg.backbone].image_size)


def presets() -> dict[str, str]:
    """Shipped recipes: name -> one-line purpose (the first comment line of its YAML file)."""
    out = {}
    for f in sorted(PRESET_DIR.glob("*.yaml")):
        first = next((ln for ln in f.read_text(encoding="utf-8").splitlines() if ln.startswith("#")), "# ")
        out[f.stem] = first.lstrip("# ").strip()
    return out


def resolve_config_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_file():
        return p
    preset = PRESET_DIR / f"{path}.yaml"
    if preset.is_file():
        return preset
    presets = ", ".join(sorted(q.stem for q in PRESET_DIR.glob("*.yaml")))
    raise ConfigError(f"config file not found: {path} (shipped presets: {presets})")


def read_config_file(path: Path, _chain: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """A config file's settings as layers to apply in order: those of the file it names as ``base`` (a file next
    to it, or a shipped preset), recursively, then its own. A recipe that differs from another in a few values
    says only those."""
    here = path.resolve()
    if here in _chain:
        raise ConfigError(f"config files name each other as base: {' -> '.join(str(p) for p in (*_chain, here))}")
    data = read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return [data]
    if not isinstance(base, str) or not base:
        raise ConfigError(f"invalid base={base!r} in {path}: must be a preset name or a config file")
    near = path.parent / base
    return [*read_config_file(near if near.is_file() else resolve_config_path(base), (*_chain, here)), data]


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings")
    return data


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"invalid {name}={value!r}: must be {allowed}")


def validate(cfg: TrainConfig) -> None:
    """Raises ConfigError naming the first invalid field."""
    _check(cfg.backbone in BACKBONES, "backbone", cfg.backbone, "one of " + ", ".join(BACKBONES))
    _check(isinstance(cfg.weights, str) and bool(cfg.weights), "weights", cfg.weights,
           "'imagenet', 'none' or a path to a weights file")
    _check(cfg.image_size is None or (isinstance(cfg.image_size, int) and 32 <= cfg.image_size <= 1024),
           "image_size", cfg.image_size, "an integer from 32 to 1024, or null for the backbone's native size")
    for name in ("batch_size",):
        v = getattr(cfg, name)
        _check(isinstance(v, int) and v >= 1, name, v, "a positive integer")
    for name in ("epochs_frozen", "epochs_finetune", "early_stopping_patience", "reduce_lr_patience"):
        v = getattr(cfg, name)
        _check(isinstance(v, int) and v >= 0, name, v, "a non-negative integer")
    _check(cfg.epochs_frozen + cfg.epochs_finetune >= 1, "epochs_frozen + epochs_finetune",
           cfg.epochs_frozen + cfg.epochs_finetune, "at least 1 (a run with no epoch trains nothing)")
    for name in ("lr_frozen", "lr_finetune"):
        v = getattr(cfg, name)
        _check(isinstance(v, (int, float)) and v > 0, name, v, "a positive number")
    _check(isinstance(cfg.unfreeze, (int, str)) and not isinstance(cfg.unfreeze, bool)
           and (not isinstance(cfg.unfreeze, int) or cfg.unfreeze >= 0),
           "unfreeze", cfg.unfreeze, "a number of top layers (>= 0) or a block name such as 'block6'")
    _check(0 <= cfg.dropout < 1, "dropout", cfg.dropout, "in [0, 1)")
    _check(0 < cfg.val_fraction < 1, "val_fraction", cfg.val_fraction, "in (0, 1)")
    _check(cfg.max_per_class is None or (isinstance(cfg.max_per_class, int) and cfg.max_per_class >= 2),
           "max_per_class", cfg.max_per_class, "an integer >= 2, or null for all images")
    _check(0 < cfg.reduce_lr_factor < 1, "reduce_lr_factor", cfg.reduce_lr_factor, "in (0, 1)")
    _check(cfg.target_fpr is None or (isinstance(cfg.target_fpr, (int, float)) and 0 <= cfg.target_fpr < 1),
           "target_fpr", cfg.target_fpr, "null, or a false-positive rate in [0, 1)")
    _check(cfg.strategy in STRATEGIES, "strategy", cfg.strategy, "one of " + ", ".join(STRATEGIES))
    _check(cfg.devices is None or (isinstance(cfg.devices, list) and all(isinstance(d, str) for d in cfg.devices)),
           "devices", cfg.devices, "a list of device names such as ['/gpu:0', '/gpu:1']")
    for name in ("stochastic_depth", "cache_features", "scale_lr", "mixed_precision", "train_batchnorm"):
        _check(isinstance(getattr(cfg, name), bool), name, getattr(cfg, name), "true or false")
    _check(cfg.class_weights in ("auto", "none"), "class_weights", cfg.class_weights, "'auto' or 'none'")
    _check(cfg.recipe is None or (isinstance(cfg.recipe, str) and bool(cfg.recipe)), "recipe", cfg.recipe,
           "null or the name of a shipped preset (load_config sets it)")
    _check(cfg.input in INPUT_MODES, "input", cfg.input, "one of " + ", ".join(INPUT_MODES))
    _check(type(cfg.crops) is int and cfg.crops in CROP_COUNTS, "crops", cfg.crops,
           "1 (centre), 5 (corners + centre) or 9 (3x3 grid)")
    _check(cfg.crop_combine in COMBINE_RULES, "crop_combine", cfg.crop_combine, "one of " + ", ".join(COMBINE_RULES))
    _check(cfg.input != "crop" or not cfg.finetune_sizes, "finetune_sizes", cfg.finetune_sizes,
           "null with input: crop (progressive resizing resizes; crops keep the native resolution)")
    _validate_schedule(cfg)
    _validate_augment(cfg.augment)
    _validate_data(cfg.data)


def _validate_data(data: Any) -> None:
    allowed = "null, or a list of sources: each a path, or {path, weight, max_per_class, name, generators}"
    _check(data is None or (isinstance(data, list) and bool(data)), "data", data, allowed)
    for i, e in enumerate(data or []):
        if isinstance(e, str):
            continue
        _check(isinstance(e, dict) and isinstance(e.get("path"), str)
               and set(e) <= {"path", "weight", "max_per_class", "name", "generators"}, f"data[{i}]", e, allowed)
        g = e.get("generators")
        _check(g is None or (isinstance(g, list) and all(isinstance(v, str) and v for v in g)),
               f"data[{i}].generators", g, "a list of the generators of its fakes, e.g. ['Midjourney 6']")
        w = e.get("weight", 1.0)
        _check(isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0, f"data[{i}].weight", w,
               "a positive number (the source's relative share of the training batches)")
        m = e.get("max_per_class")
        _check(m is None or (isinstance(m, int) and m >= 2), f"data[{i}].max_per_class", m,
               "an integer >= 2, or null")


def _validate_schedule(cfg: TrainConfig) -> None:
    _check(cfg.schedule in SCHEDULES, "schedule", cfg.schedule, "one of " + ", ".join(SCHEDULES))
    _check(isinstance(cfg.min_lr_ratio, (int, float)) and 0 <= cfg.min_lr_ratio <= 1, "min_lr_ratio",
           cfg.min_lr_ratio, "in [0, 1]")
    _check(cfg.warmup_steps is None or (isinstance(cfg.warmup_steps, int) and cfg.warmup_steps >= 0),
           "warmup_steps", cfg.warmup_steps, "null or a non-negative integer")
    _check(cfg.ema_decay is None or (isinstance(cfg.ema_decay, float) and 0 < cfg.ema_decay < 1), "ema_decay",
           cfg.ema_decay, "null, or a decay in (0, 1) such as 0.999")
    _check(isinstance(cfg.label_smoothing, (int, float)) and 0 <= cfg.label_smoothing < 1, "label_smoothing",
           cfg.label_smoothing, "in [0, 1)")
    _check(isinstance(cfg.mixup, (int, float)) and not isinstance(cfg.mixup, bool) and 0 <= cfg.mixup <= 10,
           "mixup", cfg.mixup, "0 (off) or the alpha of Beta(alpha, alpha) in (0, 10], e.g. 0.2")
    _check(isinstance(cfg.weight_decay, (int, float)) and not isinstance(cfg.weight_decay, bool)
           and 0 <= cfg.weight_decay < 1, "weight_decay", cfg.weight_decay, "in [0, 1), e.g. 0.05")
    _check(cfg.finetune_sizes is None or (
        isinstance(cfg.finetune_sizes, list) and len(cfg.finetune_sizes) < cfg.epochs_finetune
        and all(isinstance(v, int) and not isinstance(v, bool) and 32 <= v <= 1024 and v % 32 == 0
                for v in cfg.finetune_sizes)),
        "finetune_sizes", cfg.finetune_sizes,
        f"null, or a list of fewer than epochs_finetune ({cfg.epochs_finetune}) image sizes, multiples of 32 "
        "(the last epoch trains at image_size, the size validated and served)")
    _check(not cfg.finetune_sizes or (cfg.image_size is not None and cfg.image_size % 32 == 0), "image_size",
           cfg.image_size, "a multiple of 32 with finetune_sizes (progressive resizing keeps the strided layers' "
           "padding equal at every size only then)")


def _validate_augment(a: AugmentConfig) -> None:
    for name in ("rotation", "zoom", "contrast"):
        v = getattr(a, name)
        _check(isinstance(v, (int, float)) and 0 <= v < 1, f"augment.{name}", v, "in [0, 1)")
    for name in ("jpeg_prob", "blur_prob"):
        v = getattr(a, name)
        _check(isinstance(v, (int, float)) and 0 <= v <= 1, f"augment.{name}", v, "a probability in [0, 1]")
    q = a.jpeg_quality
    _check(len(q) == 2 and 1 <= q[0] <= q[1] <= 100, "augment.jpeg_quality", list(q),
           "[low, high] with 1 <= low <= high <= 100")
    s = a.blur_sigma
    _check(len(s) == 2 and 0 < s[0] <= s[1] <= 10, "augment.blur_sigma", list(s),
           "[low, high] with 0 < low <= high <= 10")


def dump_config(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
