"""What decides the learning rate and the end of a phase, from validation loss: plain Python state that the
checkpoint carries (as JSON), identical on every worker because validation loss is all-reduced first.

The rules are those of Keras' ReduceLROnPlateau and EarlyStopping (mode "min"), which they replace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Plateau:
    """Multiplies the learning rate by ``factor`` after ``patience`` epochs without improvement."""
    patience: int
    factor: float
    min_lr: float = 1e-7
    min_delta: float = 1e-4
    best: float = math.inf
    wait: int = 0

    def step(self, val_loss: float, lr: float) -> float:
        """The learning rate for the next epoch."""
        if val_loss < self.best - self.min_delta:
            self.best, self.wait = val_loss, 0
            return lr
        self.wait += 1
        if self.wait >= self.patience and lr > self.min_lr:
            self.wait = 0
            return max(lr * self.factor, self.min_lr)
        return lr

    def state(self) -> dict:
        return {"best": self.best, "wait": self.wait}


@dataclass
class EarlyStop:
    """Says to stop after ``patience`` epochs without improvement (never after the first epoch of a phase)."""
    patience: int
    best: float = math.inf
    wait: int = 0

    def step(self, val_loss: float, epoch_in_phase: int) -> bool:
        if val_loss < self.best:
            self.best, self.wait = val_loss, 0
            return False
        self.wait += 1
        return self.wait >= self.patience and epoch_in_phase > 1

    def state(self) -> dict:
        return {"best": self.best, "wait": self.wait}


def restore(obj, state: dict | None):
    """Puts back the counters of a killed run."""
    for k, v in (state or {}).items():
        setattr(obj, k, v)
    return obj


def warmup_lr(base_lr: float, step: int, warmup_steps: int) -> float:
    """Linear warm-up from base_lr / warmup_steps to base_lr over the first ``warmup_steps`` steps."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return base_lr
    return base_lr * (step + 1) / warmup_steps


def cosine_lr(base_lr: float, step: int, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0) -> float:
    """The rate at ``step`` (0-based) of a phase of ``total_steps``: linear warm-up, then half a cosine from
    ``base_lr`` down to ``base_lr * min_ratio`` at the last step."""
    if step < warmup_steps:
        return warmup_lr(base_lr, step, warmup_steps)
    span = max(1, total_steps - 1 - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def epoch_sizes(final_size: int, epochs: int, early: list[int] | None) -> list[int]:
    """Image size of each epoch of a phase: the ``early`` sizes first (progressive resizing), then the final."""
    early = list(early or [])[:epochs]
    return early + [final_size] * (epochs - len(early))


@dataclass
class PhaseSchedule:
    """The rate of every step of one phase and when the phase stops: warm-up then cosine decay to the phase's
    last step (``cosine``: a fixed budget, no early stop), or warm-up then the plateau rule with early stopping.

    A warm-up takes at most a fifth of the phase (a short phase, e.g. a small data set, would otherwise never
    reach its rate).
    """
    base_lr: float
    total_steps: int
    warmup_steps: int
    cosine: bool
    min_ratio: float
    plateau: Plateau
    stop: EarlyStop
    lr: float = field(init=False)  # the plateau rule's current rate

    def __post_init__(self):
        self.lr = self.base_lr
        self.warmup_steps = min(self.warmup_steps, self.total_steps // 5)

    def rate(self, step: int) -> float:
        if self.cosine:
            return cosine_lr(self.base_lr, step, self.total_steps, self.warmup_steps, self.min_ratio)
        return warmup_lr(self.lr, step, self.warmup_steps)

    def after_epoch(self, val_loss: float, epoch_in_phase: int) -> tuple[bool, list[str]]:
        """Updates the plateau rate; (whether the phase stops early, what changed, for the log)."""
        if self.cosine:
            return False, []
        notes = []
        new_lr = self.plateau.step(val_loss, self.lr)
        if new_lr != self.lr:
            notes.append(f"  validation loss did not improve for {self.plateau.patience} epoch(s): learning rate "
                         f"{self.lr:.1e} -> {new_lr:.1e}")
            self.lr = new_lr
        stopping = self.stop.step(val_loss, epoch_in_phase)
        if stopping:
            notes.append(f"  early stopping: no improvement for {self.stop.patience} epoch(s)")
        return stopping, notes

    def state(self) -> dict:
        return {"learning_rate": self.lr, "plateau": self.plateau.state(), "early_stopping": self.stop.state()}

    def restore(self, state: dict) -> None:
        self.lr = float(state["learning_rate"])
        restore(self.plateau, state.get("plateau"))
        restore(self.stop, state.get("early_stopping"))

