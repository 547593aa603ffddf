"""cnncourse: the support package of the course's notebooks and assignments."""

__version__ = "0.1.0"


def setup(seed: int = 0, device=None):
    """Seed everything; return a :class:`cnncourse.runtime.Runtime` (``device``, ``quick``, ``pick``)."""
    from cnncourse.runtime import setup as _setup

    return _setup(seed=seed, device=device)
