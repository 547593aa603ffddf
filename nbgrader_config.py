"""nbgrader configuration of the course (read only from the current directory: run nbgrader here).

solutions/<id>/<id>.ipynb  (source, with solutions and hidden tests)  -> make release
assignments/<id>/<id>.ipynb  (student release, committed)
.nbgrader/  (git-ignored): submitted/<student>/<id>/, autograded/, feedback/, gradebook.db, exchange/
"""

import os

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

ROOT = os.path.dirname(os.path.abspath(__file__))
STATE = os.path.join(ROOT, ".nbgrader")
os.makedirs(STATE, exist_ok=True)

c.CourseDirectory.root = ROOT
c.CourseDirectory.course_id = "cnncourse"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.submitted_directory = ".nbgrader/submitted"
c.CourseDirectory.autograded_directory = ".nbgrader/autograded"
c.CourseDirectory.feedback_directory = ".nbgrader/feedback"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(STATE, "gradebook.db")
c.Exchange.root = os.path.join(STATE, "exchange")

# Every cell of an assignment runs in seconds; 120 s per cell absorbs a slow machine, and a student's
# infinite loop costs at most that (the cell scores 0 and grading goes on).
c.Execute.timeout = 120
c.Execute.kernel_name = "python3"
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# Feedback must not reveal hidden tests (nbgrader shows them by default).
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
