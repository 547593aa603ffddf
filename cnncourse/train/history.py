"""The record of one training run, shared by every trainer and drawn by ``cnncourse.viz.plot_history``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class History:
    """Per-epoch curves of one run; every list has one entry per finished epoch.

    ``val_loss``/``val_acc`` stay empty when no validation data was given. ``wall_time`` is the
    cumulative seconds at the end of each epoch; ``lr`` the learning rate the epoch ended with.
    ``stopped_early`` and ``best_epoch`` (0-based) are set by early stopping.
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    wall_time: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def to_dict(self) -> dict:
        return asdict(self)
