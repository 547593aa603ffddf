"""nbgrader configuration of the course (read only from the current directory: run nbgrader here).

solutions/<id>/<id>.ipynb  (source, with solutions and hidden tests)  -> make release
assignments/<id>/<id>.ipynb  (student release, committed)
.nbgrader/  (git-ignored): submitted/<student>/<id>/, autograded/, feedback/, gradebook.db, exchange/
"""

import os

from nbgrader.preprocessors import NbGraderPreprocessor


class HideHiddenTestTracebacks(NbGraderPreprocessor):
    """A traceback quotes the lines around the failure, hidden tests included: keep only its last line.

    The student still reads ``AssertionError: <what failed, max error, where>`` in the feedback.
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and "BEGIN HIDDEN TESTS" in cell.source:
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    output.traceback = [f"{output.ename}: {output.evalue}"]
        return cell, resources


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

# Feedback must not reveal hidden tests (nbgrader shows them by default, and tracebacks quote them).
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    HideHiddenTestTracebacks,
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
