"""``nbgrader submit`` that keeps a submission private to its student and the grader.

nbgrader's default exchange leaves each submission folder in ``inbound/`` world-writable (0777) with
world-readable files, hidden only by its unguessable name. Here the folder becomes ``0770``: ``inbound/`` is
set-group-id and belongs to the grader's group (cnncourse/hub/course.py), so each submission folder belongs to
that group from its creation, and only the student and the grader (collect, clean-up) may enter it; no other
student may, even one who learns its name. (The files inside stay 0644 as nbgrader makes them: the student
cannot give them the grader's group, and the folder already keeps others out.) Selected in the users' nbgrader
config (hub/jupyter/)::

    c.ExchangeFactory.submit = "cnncourse.hub.exchange.PrivateSubmit"
"""

from __future__ import annotations

import os

from nbgrader.exchange.default.submit import ExchangeSubmit


class PrivateSubmit(ExchangeSubmit):
    """nbgrader's submit, then the submission folder closed to everyone but its owner and the grader's group."""

    def copy_files(self) -> None:
        super().copy_files()
        dest = os.path.join(self.inbound_path, self.assignment_filename)
        self.set_perms(dest, fileperms=0o644, dirperms=0o770)
