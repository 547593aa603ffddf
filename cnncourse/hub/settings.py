"""Where the hub keeps its state, the course and the exchange: one object, read from ``CNNCOURSE_*`` variables.

``hub/jupyterhub_config.py`` and ``python -m cnncourse.hub`` both read it, so the two never disagree. Every
variable has a default for one machine; the tests point them all into a temporary folder.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

# The course's one nbgrader course id: nbgrader_config.py, the students' config and the exchange folder use it.
COURSE_ID = "cnncourse"
PROJECT = Path(__file__).resolve().parents[2]


def _user_python(state: Path) -> Path:
    """The users' interpreter made by ``python -m cnncourse.hub setup``, else this one (readable by all)."""
    made = state / "userenv" / "bin" / "python"
    return made if made.exists() else Path(sys.executable)


@dataclass(frozen=True)
class HubSettings:
    """The hub's places and limits.

    - ``state``: the hub's database, cookie secret, the course, the exchange, the users' Python (root-owned);
    - ``course_root``: the instructors' nbgrader course (``nbgrader_config.py``, ``solutions/``), owned by
      ``grader``, the Unix account the formgrader service runs as;
    - ``exchange``: nbgrader's exchange root (mode 1777: anyone may create, only owners rename or delete);
    - ``roster``: the roster CSV the hub reads its allowed users and roles from;
    - ``mem_limit``/``cpu_limit``: per user server (see :mod:`cnncourse.hub.spawner` for what is enforced).
    """

    state: Path
    course_root: Path
    exchange: Path
    roster: Path
    grader: str
    ip: str
    port: int
    hub_port: int
    proxy_api_port: int
    formgrader_port: int
    mem_limit: str
    cpu_limit: float
    cull_timeout: int
    user_python: Path
    home_base: Path

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> HubSettings:
        env = os.environ if env is None else env
        state = Path(env.get("CNNCOURSE_HUB_STATE", "/srv/cnncourse"))

        def number(name: str, default: str, kind=int):
            value = env.get(name, default)
            try:
                return kind(value)
            except ValueError:
                raise ValueError(f"{name}={value!r} is not a number: set it to e.g. {default}") from None

        return cls(
            state=state,
            course_root=Path(env.get("CNNCOURSE_COURSE_ROOT", state / "course")),
            exchange=Path(env.get("CNNCOURSE_EXCHANGE", state / "exchange")),
            roster=Path(env.get("CNNCOURSE_ROSTER", state / "roster.csv")),
            grader=env.get("CNNCOURSE_GRADER", "cnncourse-grader"),
            ip=env.get("CNNCOURSE_HUB_IP", "127.0.0.1"),
            port=number("CNNCOURSE_HUB_PORT", "8000"),
            hub_port=number("CNNCOURSE_HUB_API_PORT", "8081"),
            proxy_api_port=number("CNNCOURSE_PROXY_API_PORT", "8001"),
            formgrader_port=number("CNNCOURSE_FORMGRADER_PORT", "8002"),
            mem_limit=env.get("CNNCOURSE_MEM_LIMIT", "4G"),
            cpu_limit=number("CNNCOURSE_CPU_LIMIT", "1", float),
            cull_timeout=number("CNNCOURSE_CULL_TIMEOUT", "3600"),
            user_python=Path(env.get("CNNCOURSE_USER_PYTHON") or _user_python(state)),
            home_base=Path(env.get("CNNCOURSE_HOME_BASE", "/home")),
        )

    def environment(self) -> dict[str, str]:
        """The variables that carry these settings to the hub's children (user servers, services, commands)."""
        return {"CNNCOURSE_HUB_STATE": str(self.state), "CNNCOURSE_COURSE_ROOT": str(self.course_root),
                "CNNCOURSE_EXCHANGE": str(self.exchange), "CNNCOURSE_ROSTER": str(self.roster),
                "CNNCOURSE_GRADER": self.grader, "CNNCOURSE_COURSE_ID": COURSE_ID}
