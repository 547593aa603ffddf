"""``nbgrader submit`` that keeps a submission private to its student and the grader.

nbgrader's default exchange leaves each submission folder in ``inbound/`` world-writable (0777) with
world-readable files, hidden only by its unguessable name. Here the folder becomes ``0770`` and its files
``0640``: ``inbound/`` is set-group-id and belongs to the grader's group (cnncourse/hub/course.py), so the
submission's files belong to that group: the student and the grader (collect, clean-up) may read them, no other
student may, even one who learns the name. Selected in the users' nbgrader config (hub/jupyter/)::

    c.ExchangeFactory.submit = "cnncourse.hub.exchange.PrivateSubmit"
"""

from __future__ import annotations

import os

from nbgrader.exchange.default.submit import ExchangeSubmit


class PrivateSubmit(ExchangeSubmit):
    """nbgrader's submit, then the submission readable by its owner and the grader's group only."""

    def copy_files(self) -> None:
        super().copy_files()
        dest = os.path.join(self.inbound_path, self.assignment_filename)
        self.set_perms(dest, fileperms=0o640, dirperms=0o770)
