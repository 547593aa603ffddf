"""Training: :class:`History` (per-epoch curves), :func:`fit` / :func:`evaluate` (DataLoader loop) and
:func:`fit_tensors` (a whole split held on the device as uint8, for the malaria assignment)."""

from cnncourse.train.history import History
from cnncourse.train.tensors import fit_tensors

__all__ = ["History", "fit_tensors"]
