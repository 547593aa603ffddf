"""The user servers' spawner: JupyterHub's local process spawner with per-user resource limits.

``LocalProcessSpawner`` ignores ``mem_limit`` and ``cpu_limit`` (only container and systemd spawners enforce
them). Without systemd or cgroups, this spawner sets, in the server process before it drops to the user (and so
in every kernel and terminal it starts):

- ``RLIMIT_DATA`` = ``mem_limit``: enforced by the kernel, per process: an allocation past it fails
  (``MemoryError`` in Python, the kernel dies, the server lives). Not a total per user: two kernels may use
  twice the limit. File mappings (shared libraries) do not count.
- ``RLIMIT_NPROC`` = ``nproc_limit``: processes and threads of the user, all together (a fork bomb stops).
- a ``nice`` level, so that the hub and other users stay responsive when one user computes.
- ``cpu_limit`` as thread counts (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``): torch and NumPy use that many
  cores by default. Advice, not enforcement: a user can raise them. Real CPU quotas need cgroups (systemd
  spawner, Kubernetes: hub/README.md).
"""

from __future__ import annotations

import math
import os
import resource

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Integer


class CourseSpawner(LocalProcessSpawner):
    """``LocalProcessSpawner`` plus rlimits (memory, processes), niceness and thread counts from ``cpu_limit``."""

    nproc_limit = Integer(2048, config=True,
                          help="Most processes and threads one user may run at once (RLIMIT_NPROC); 0: no limit.")
    nice = Integer(5, config=True, help="Niceness added to each user server (and its kernels): 0..19.")

    def make_preexec_fn(self, name):
        drop_to_user = super().make_preexec_fn(name)
        memory, nproc, nice = self.mem_limit, self.nproc_limit, self.nice

        def preexec() -> None:  # runs in the child, as root, before exec
            if memory:
                resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
            if nproc:
                resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
            if nice:
                os.nice(nice)
            drop_to_user()

        return preexec

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        if self.cpu_limit:
            threads = str(max(1, math.floor(self.cpu_limit)))
            env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        return env
