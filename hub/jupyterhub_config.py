"""JupyterHub for the course on one machine: real Unix users, PAM login, roles, the formgrader as a service.

Started by ``make hub`` (as root): ``jupyterhub -f hub/jupyterhub_config.py``. Every place and limit comes from
``cnncourse.hub.settings.HubSettings`` (``CNNCOURSE_*`` variables, defaults under /srv/cnncourse); the allowed
users and their roles come from the roster CSV (``python -m cnncourse.hub roster``). See hub/README.md.
"""

import sys

from cnncourse.hub.roster import by_role, read_roster
from cnncourse.hub.settings import PROJECT, HubSettings
from cnncourse.hub.spawner import CourseSpawner

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

s = HubSettings.from_env()
members = read_roster(s.roster)
students, instructors = by_role(members, "student"), by_role(members, "instructor")

# Network: everything on s.ip (127.0.0.1 by default; a TLS-terminating proxy in front for a real class).
c.JupyterHub.bind_url = f"http://{s.ip}:{s.port}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{s.hub_port}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{s.proxy_api_port}"
c.ConfigurableHTTPProxy.command = [str(PROJECT / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(s.state / "jupyterhub-proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{s.state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(s.state / "jupyterhub_cookie_secret")

# Who logs in: Unix accounts with their passwords (PAM), only those on the roster (since JupyterHub 5 an empty
# allow list lets nobody in; nbgrader's docs still show the removed `whitelist`). No admins: nobody needs them.
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.open_sessions = False
c.Authenticator.allowed_users = set(students + instructors)
c.Authenticator.admin_users = set()

# Roles with least privilege. Everyone keeps the default `user` role (`self`: their own server and tokens);
# instructors may also reach the formgrader service, which nobody else may. Role names need >= 3 characters.
c.JupyterHub.load_roles = [
    {"name": "student", "description": "a student: own server only", "scopes": ["self"], "users": students},
    {"name": "instructor", "description": "an instructor: own server and the formgrader",
     "scopes": ["self", "access:services!service=formgrader"], "users": instructors},
    {"name": "idle-culler", "description": "stop idle servers",
     "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"], "services": ["idle-culler"]},
]

# User servers: the user's own Unix process, from a Python everyone can run (python -m cnncourse.hub setup),
# with the course's packages and kernel; rlimits and thread counts per user (cnncourse/hub/spawner.py).
user_bin = str(s.user_python.parent)
path = f"{user_bin}:/usr/local/bin:/usr/bin:/bin"
c.JupyterHub.spawner_class = CourseSpawner
c.Spawner.cmd = [str(s.user_python), "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.mem_limit = s.mem_limit
c.Spawner.cpu_limit = s.cpu_limit
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 90
# hub/jupyter/: the users' nbgrader settings (the course id and exchange, nothing of the instructors' course)
# and server settings; the formgrader service reads them too, under the course's own nbgrader_config.py.
env = {**s.environment(), "PATH": path, "JUPYTER_CONFIG_PATH": str(PROJECT / "hub" / "jupyter")}
c.Spawner.environment = env

c.JupyterHub.services = [
    {   # nbgrader's formgrader: a Jupyter server run as the grader account in the course folder
        "name": "formgrader",
        "url": f"http://127.0.0.1:{s.formgrader_port}",
        "command": [str(s.user_python), "-m", "jupyterhub.singleuser", "--ServerApp.default_url=/formgrader"],
        "user": s.grader,
        "cwd": str(s.course_root),
        "environment": {**env, "JUPYTERHUB_DEFAULT_URL": "/formgrader"},
        "oauth_no_confirm": True,
        "timeout": 180,  # the hub waits for it at start-up; a busy machine needs more than the default 30 s
    },
    {   # stop servers idle for cull_timeout seconds
        "name": "idle-culler",
        "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={s.cull_timeout}"],
    },
]
