"""The one place that reads the course's environment: quick mode, device, seeds.

Notebooks start with ``rt = cnncourse.setup()`` instead of repeating ``os.environ`` and
``torch.cuda.is_available()`` in every lecture.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["Runtime", "is_quick", "default_device", "seed_everything", "setup", "cpu_model", "cpu_record"]


def is_quick() -> bool:
    """True when ``CNNCOURSE_QUICK=1`` (set by the tests): notebooks shrink their data and epochs."""
    return os.environ.get("CNNCOURSE_QUICK", "0").strip().lower() in {"1", "true", "yes"}


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), e.g. ``"AMD EPYC 7B13"``; ``platform``'s guess elsewhere."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_record() -> dict:
    """What a timing or a seeded result depends on: ``{"cpu", "cores", "capability", "amx", "avx512_bf16"}``
    (torch picks its CPU kernels, and :func:`cnncourse.train.tensors.default_amp` bf16, from these)."""
    flags = {name: getattr(torch.cpu, f"_is_{name}_supported", None) for name in ("amx_tile", "avx512_bf16")}
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "capability": torch.backends.cpu.get_cpu_capability(),
            "amx": bool(flags["amx_tile"] and flags["amx_tile"]()),
            "avx512_bf16": bool(flags["avx512_bf16"] and flags["avx512_bf16"]())}  # fmt: skip


def seed_everything(seed: int = 0) -> None:
    """Seed Python's, NumPy's and torch's generators (all devices)."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # numpy is a dependency; this only keeps the function usable without it
        pass
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Runtime:
    """What a notebook needs to know about where it runs."""

    device: torch.device
    quick: bool
    seed: int

    def pick(self, full, quick):
        """``quick`` in quick mode, else ``full``: ``epochs = rt.pick(20, 2)``."""
        return quick if self.quick else full


def setup(seed: int = 0, device: str | torch.device | None = None) -> Runtime:
    """Seed everything and return the device and quick flag (quick mode on the CPU uses one thread).

    Args:
        seed: seed for Python, NumPy and torch.
        device: force a device (``"cpu"``); default CUDA when present, else CPU.
    """
    seed_everything(seed)
    chosen = torch.device(device) if device is not None else default_device()
    runtime = Runtime(device=chosen, quick=is_quick(), seed=seed)
    if runtime.quick and runtime.device.type == "cpu":
        # the tests run two notebooks side by side on two cores: more threads each only fight each other
        torch.set_num_threads(1)
    return runtime
