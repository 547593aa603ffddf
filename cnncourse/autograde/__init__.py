"""The grading harness (instructors' side): nbgrader preprocessors, in-process grader, audit, parallel runner.

Test cells never import from here; they use :mod:`cnncourse.grading`.

* :mod:`.preprocessors`: give each graded kernel a key, score 0 and flag a test cell whose pass marker is
  missing or forged, and keep feedback to each test cell's score and assertion message.
* :mod:`.inprocess`: run a source notebook (or a mutant of it) in this process and score it like nbgrader.
"""
