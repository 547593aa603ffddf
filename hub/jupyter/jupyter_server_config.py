"""Jupyter server settings of every server the hub starts (users' and the formgrader service)."""

c = get_config()  # noqa: F821 - provided by traitlets when jupyter_server loads this file

# A terminal runs a plain (not login) bash: a login shell's /etc/profile would reset PATH, which the hub sets to
# the course's Python first (python, nbgrader, jupyter).
c.ServerApp.terminado_settings = {"shell_command": ["/bin/bash"]}
