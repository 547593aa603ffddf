"""nbgrader settings of every user server on the hub (students and instructors): the course and its exchange.

The hub puts this folder on ``JUPYTER_CONFIG_PATH``; the values come from its environment
(``CNNCOURSE_COURSE_ID``, ``CNNCOURSE_EXCHANGE``), so the course id is defined once (cnncourse/hub/settings.py).
"""

import os

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

c.CourseDirectory.course_id = os.environ["CNNCOURSE_COURSE_ID"]
c.Exchange.root = os.environ["CNNCOURSE_EXCHANGE"]
# Submissions readable by their student and the grader only (nbgrader's own are world-readable by name).
c.ExchangeFactory.submit = "cnncourse.hub.exchange.PrivateSubmit"
