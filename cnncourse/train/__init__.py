"""Training: :class:`History` (per-epoch curves), :func:`fit` / :func:`evaluate` / :func:`predict` (DataLoader loop)
and :class:`EarlyStopping`."""

from cnncourse.train.history import History
from cnncourse.train.loop import EarlyStopping, Metrics, evaluate, fit, predict

__all__ = ["History", "EarlyStopping", "Metrics", "evaluate", "fit", "predict"]
