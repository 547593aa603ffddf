"""sklearn's handwritten digits (1797 images, 8x8, ten classes) as torch splits, offline.

``load_digits_splits(size=28)`` upsamples the 8x8 images bilinearly so LeNet-sized networks have
something to convolve; the split is stratified (every class in the same proportion in each split) and
seeded, so every run of a notebook sees the same train/val/test images.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["load_digits_splits", "digits_loaders"]

SPLITS = ("train", "val", "test")


def load_digits_splits(
    size: int = 8,
    *,
    n: int | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, TensorDataset]:
    """Stratified, seeded train/val/test splits of the digits.

    Args:
        size: image side; 8 is the original, larger sizes are bilinear upsamplings (28 for LeNet-style nets).
        n: use only ``n`` images (a stratified subset), e.g. to shrink a notebook in quick mode.
        val_fraction, test_fraction: shares of the (subset of) images held out for validation and test.
        seed: seeds the subset and the split.

    Returns:
        ``{"train", "val", "test"}`` -> ``TensorDataset(x, y)`` with ``x: (N, 1, size, size)`` float32 in
        [0, 1] and ``y: (N,)`` int64 class labels 0-9.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8 (the digits are 8x8; larger sizes upsample), got {size!r}.")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise ValueError(f"{name} must be between 0 and 1 (exclusive), got {value!r}.")
    if val_fraction + test_fraction >= 0.9:
        raise ValueError(f"val_fraction + test_fraction = {val_fraction + test_fraction:g} leaves too little to "
                         f"train on; keep their sum below 0.9.")
    digits = load_digits()
    images, labels = digits.images.astype(np.float32) / 16.0, digits.target.astype(np.int64)
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or not 50 <= n <= len(labels):
            raise ValueError(f"n must be an int between 50 and {len(labels)} (the number of digits), got {n!r}.")
        if n < len(labels):
            images, _, labels, _ = train_test_split(images, labels, train_size=n, stratify=labels, random_state=seed)
    rest_x, test_x, rest_y, test_y = train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=seed)
    train_x, val_x, train_y, val_y = train_test_split(
        rest_x, rest_y, test_size=val_fraction / (1 - test_fraction), stratify=rest_y, random_state=seed)

    def dataset(x: np.ndarray, y: np.ndarray) -> TensorDataset:
        t = torch.from_numpy(x).unsqueeze(1)  # (N, 1, 8, 8)
        if size != 8:
            t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
        return TensorDataset(t.contiguous(), torch.from_numpy(y))

    return {"train": dataset(train_x, train_y), "val": dataset(val_x, val_y), "test": dataset(test_x, test_y)}


def digits_loaders(
    batch_size: int = 64, size: int = 8, *, n: int | None = None, seed: int = 0
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train, val and test DataLoaders over :func:`load_digits_splits` (train shuffled by a seeded generator)."""
    splits = load_digits_splits(size, n=n, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    return (DataLoader(splits["train"], batch_size=batch_size, shuffle=True, generator=generator),
            DataLoader(splits["val"], batch_size=batch_size),
            DataLoader(splits["test"], batch_size=batch_size))
