"""What one training command shares (:class:`Setup`): built by the recipe once the data is checked and the run
folder exists, read by the phases and by the finish."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fakedetect.config import TrainConfig
from fakedetect.data.splits import Split
from fakedetect.training.cluster import is_chief, replicas
from fakedetect.training.inputs import DataSummary


@dataclass
class Setup:
    """What every stage of one training command shares. ``cfg`` is resolved (its ``image_size`` is a number)."""
    cfg: TrainConfig
    strategy: object
    run_dir: Path  # where this process writes (a non-chief worker: a temporary folder)
    out: Path  # the run folder (the chief's)
    train: Split
    val: Split
    summary: DataSummary
    resume: bool
    t_start: float
    state: dict = field(default_factory=dict)

    @property
    def chief(self) -> bool:
        return is_chief()

    @property
    def source_names(self) -> list[str]:
        return [src["name"] for src in self.summary.sources]

    @property
    def n_sources(self) -> int:
        return max(1, len(self.source_names))

    @property
    def mix(self) -> list[float] | None:
        """Each source's share of the training stream (normalised weights); None with one source."""
        if not self.summary.sources:
            return None
        total = sum(src["weight"] for src in self.summary.sources)
        return [src["weight"] / total for src in self.summary.sources]

    @property
    def global_batch(self) -> int:
        """Images per step over all replicas (``batch_size`` is per replica)."""
        return self.cfg.batch_size * replicas(self.strategy)

    @property
    def lr_scale(self) -> int:
        """The factor of the learning rates: the number of replicas with ``scale_lr``, else 1."""
        return replicas(self.strategy) if self.cfg.scale_lr else 1
