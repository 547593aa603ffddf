"""Training: :class:`History` (per-epoch curves), :func:`fit` / :func:`evaluate` / :func:`predict` (DataLoader loop),
:class:`EarlyStopping`, and :func:`fit_tensors` (a whole split held on the device as uint8)."""

from cnncourse.train.history import History
from cnncourse.train.loop import EarlyStopping, Metrics, evaluate, fit, predict
from cnncourse.train.tensors import fit_tensors

__all__ = ["History", "EarlyStopping", "Metrics", "evaluate", "fit", "predict", "fit_tensors"]
