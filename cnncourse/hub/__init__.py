"""The course on JupyterHub, one machine with real Unix users (see hub/README.md).

- :mod:`settings`  where things live (state folder, course root, exchange), read from ``CNNCOURSE_*`` variables;
- :mod:`roster`    the roster CSV (one row per student or instructor);
- :mod:`accounts`  Unix accounts and the course's folders (exchange with the sticky bit, grader-owned course);
- :mod:`userenv`   a Python every user can run, with the course's packages;
- :mod:`spawner`   the single-user spawner with per-user resource limits;
- :mod:`grading`   the one call to autograde;
- :mod:`canvas`    the grade export for an LMS (Canvas gradebook CSV).

``python -m cnncourse.hub {setup,roster,autograde,canvas}`` are the instructors' commands.
"""
