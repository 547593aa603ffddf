"""Procedurally drawn malaria-like cell crops, for working offline.

``synthetic_cells(n)`` draws stand-ins for the NIH malaria crops: a pale pink-to-violet red blood cell
with an irregular, slightly shaded edge on a black background, stained per (fake) patient. Parasitized
cells (label 1) carry 1-3 dark magenta chromatin dots, rings or crescents; about a third of uninfected
cells (label 0) carry faint small artefacts, and some parasites are small and pale, so the task is not
trivial. Patients are fake too: about 60 cells each, a quarter of them with no parasitized cell at all
(as in the real set), so patient-level splits can be practised on this data as well.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

__all__ = ["CellTensors", "synthetic_cells", "save_pngs"]

_SALMON = np.array([226.0, 152.0, 142.0])  # the two ends of the real stain range (measured on real crops)
_LAVENDER = np.array([186.0, 178.0, 212.0])
_CHROMATIN = np.array([160.0, 36.0, 140.0])
_ARTEFACT = np.array([120.0, 96.0, 140.0])
CELLS_PER_PATIENT = 60


class CellTensors(NamedTuple):
    """A whole split in memory; unpacks as ``images, labels, patient_ids = ...``.

    images: (N, 3, S, S) uint8, RGB, black background. labels: (N,) int64, 1 = Parasitized.
    patient_ids: list of N strings.
    """

    images: torch.Tensor
    labels: torch.Tensor
    patient_ids: list[str]


def _blob(u: np.ndarray, v: np.ndarray, cx: float, cy: float, r: float, px: float) -> np.ndarray:
    """Soft disc of radius r (in [-1, 1] units) at (cx, cy): 1 inside, 0 outside, ~1 pixel ramp."""
    return np.clip((r - np.hypot(u - cx, v - cy)) * px + 0.5, 0.0, 1.0)


def _draw_cell(rng: np.random.Generator, size: int, stain: np.ndarray, parasitized: bool) -> np.ndarray:
    """One (size, size, 3) float image in [0, 255]."""
    px = size / 2  # pixels per unit
    lin = (np.arange(size) + 0.5) / px - 1.0
    v, u = np.meshgrid(lin, lin, indexing="ij")

    # Cell body: a rotated ellipse whose radius wobbles with the angle (irregular edge).
    a = rng.uniform(0.84, 0.98)
    b = a * rng.uniform(0.78, 1.0)
    rot = rng.uniform(0, math.pi)
    cx, cy = rng.normal(0, 0.03, size=2)
    x = (u - cx) * math.cos(rot) + (v - cy) * math.sin(rot)
    y = -(u - cx) * math.sin(rot) + (v - cy) * math.cos(rot)
    phi = np.arctan2(y, x)
    wobble = np.ones_like(phi)
    for k in range(2, 8):
        wobble += rng.uniform(0, 0.035 if k < 5 else 0.015) * np.cos(k * phi + rng.uniform(0, 2 * math.pi))
    if rng.random() < 0.12:  # an occasional strongly deformed cell
        wobble += rng.uniform(0.08, 0.18) * np.cos(rng.integers(2, 4) * phi + rng.uniform(0, 2 * math.pi))
    rho = np.hypot(x / a, y / b) / wobble
    body = np.clip((1.0 - rho) * a * px + 0.5, 0.0, 1.0)

    # Shading: darker rim, paler centre (the biconcave pallor), mild smooth texture.
    color = stain + rng.normal(0, 6, size=3)
    shade = 1.0 - 0.10 * rho**2 + rng.uniform(0.02, 0.08) * np.exp(-((rho / 0.35) ** 2))
    coarse = torch.from_numpy(rng.normal(0, 1, size=(1, 1, size // 6 + 2, size // 6 + 2)))
    texture = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    texture = texture[0, 0].numpy() * rng.uniform(2.0, 5.0)
    img = np.clip(color[None, None, :] * shade[..., None] + texture[..., None], 0, 255)

    def stamp(rgb: np.ndarray, alpha: np.ndarray) -> None:
        nonlocal img
        img = img * (1 - alpha[..., None]) + rgb[None, None, :] * alpha[..., None]

    if parasitized:
        for _ in range(rng.integers(1, 4)):
            ang, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0.1, 0.85) * a
            px_, py_ = cx + dist * math.cos(ang), cy + dist * math.sin(ang)
            rgb = _CHROMATIN + rng.normal(0, 12, size=3)
            opacity = rng.uniform(0.5, 0.95)
            kind = rng.integers(3)
            r = rng.uniform(0.05, 0.15)
            if kind == 0:  # dot
                shape = _blob(u, v, px_, py_, r * 0.7, px)
            elif kind == 1:  # ring: a disc minus a smaller one
                shape = np.clip(_blob(u, v, px_, py_, r, px) - _blob(u, v, px_, py_, r * 0.55, px), 0, 1)
            else:  # crescent: a disc minus an offset disc
                off = r * 0.6
                shape = np.clip(
                    _blob(u, v, px_, py_, r, px)
                    - _blob(u, v, px_ + off * math.cos(ang), py_ + off * math.sin(ang), r, px),
                    0,
                    1,
                )
            stamp(rgb, shape * opacity)
    elif rng.random() < 0.35:
        for _ in range(rng.integers(1, 3)):
            ang, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 0.85) * a
            spot = _blob(u, v, cx + dist * math.cos(ang), cy + dist * math.sin(ang), rng.uniform(0.025, 0.05), px)
            stamp(_ARTEFACT, spot * rng.uniform(0.15, 0.4))

    return img * body[..., None]  # black outside the cell


def synthetic_cells(n: int, *, size: int = 64, seed: int = 0) -> CellTensors:
    """Draw ``n`` synthetic cell crops.

    Args:
        n: number of cells (>= 1).
        size: side S of the square images (>= 16).
        seed: the same seed gives the same cells, labels and patients.

    Returns:
        ``CellTensors(images (n, 3, S, S) uint8, labels (n,) int64 with 1 = Parasitized,
        patient_ids list of n strings like "SYN007")``. About half the cells are parasitized; with
        n >= 2 both classes are present.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}.")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an int >= 16, got {size!r}.")
    rng = np.random.default_rng(seed)
    n_patients = max(1, math.ceil(n / CELLS_PER_PATIENT))
    patient_of = rng.permutation(np.arange(n) % n_patients)
    infected = np.arange(n_patients) % 4 != 3  # patient 0 always infected; every 4th has no parasites
    stains = [(t := rng.uniform()) * _SALMON + (1 - t) * _LAVENDER for _ in range(n_patients)]

    labels = np.zeros(n, dtype=np.int64)
    seen = np.zeros(n_patients, dtype=np.int64)
    for i, p in enumerate(patient_of):  # within an infected patient, two cells in three are parasitized
        labels[i] = int(infected[p] and seen[p] % 3 != 1)
        seen[p] += 1

    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        images[i] = np.rint(_draw_cell(rng, size, stains[patient_of[i]], bool(labels[i])))
    return CellTensors(
        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(labels),
        [f"SYN{p:03d}" for p in patient_of],
    )


def save_pngs(
    cells: CellTensors, folder: str | os.PathLike, classes: tuple[str, str] = ("Uninfected", "Parasitized")
) -> list[Path]:
    """Write cells as ``folder/<class>/<patient>_IMG_<i>_cell_<i>.png``, the NIH layout; return the paths.

    Handy for trying tools that read folders (``python -m cnncourse evaluate``) without the real data.
    """
    folder = Path(folder)
    paths = []
    for i, (image, label, patient) in enumerate(zip(cells.images, cells.labels.tolist(), cells.patient_ids,
                                                     strict=True)):  # fmt: skip
        path = folder / classes[label] / f"{patient}_IMG_{i:05d}_cell_{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).cpu().numpy()).save(path)
        paths.append(path)
    return paths
