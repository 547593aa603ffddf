"""nbgrader configuration of the course (read only from the current directory: run nbgrader here).

solutions/<id>/<id>.ipynb  (source, with solutions and hidden tests)  -> make release
assignments/<id>/<id>.ipynb  (student release, committed)
.nbgrader/  (git-ignored): submitted/<student>/<id>/, autograded/, feedback/, gradebook.db, exchange/
"""

import os

from cnncourse.autograde.kernel import SandboxedExecute
from cnncourse.autograde.preprocessors import FeedbackScoresOnly, FlagSubmission, StartGrading, VerifyPassMarkers
from cnncourse.autograde.settings import KERNEL_ARGUMENTS
from cnncourse.hub.settings import COURSE_ID

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

ROOT = os.path.dirname(os.path.abspath(__file__))
STATE = os.path.join(ROOT, ".nbgrader")
os.makedirs(STATE, exist_ok=True)

c.CourseDirectory.root = ROOT
c.CourseDirectory.course_id = COURSE_ID  # the one course id (the hub's users get it too)
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.submitted_directory = ".nbgrader/submitted"
c.CourseDirectory.autograded_directory = ".nbgrader/autograded"
c.CourseDirectory.feedback_directory = ".nbgrader/feedback"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(STATE, "gradebook.db")
# On the hub the exchange is shared by every user (hub/README.md); alone, it is a folder of the course.
c.Exchange.root = os.environ.get("CNNCOURSE_EXCHANGE") or os.path.join(STATE, "exchange")

# Every cell of an assignment runs in seconds; 120 s per cell absorbs a slow machine, and a student's
# infinite loop costs at most that (the cell scores 0 and grading goes on).
c.Execute.timeout = 120
c.Execute.kernel_name = "python3"
# The kernel imports cnncourse.grading before any cell, so that it captures torch & co. before student code (and,
# graded, the assignment's toolkit entries of c.CnnCourseAutograde.toolkits below).
c.Execute.extra_arguments = KERNEL_ARGUMENTS
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# Every graded kernel runs in a bubblewrap sandbox (cnncourse/autograde/sandbox.py; README "Grading in a
# sandbox"): no network, no view of solutions/, .nbgrader/, other students or hidden data, a cleared environment,
# rlimits, and a whole-notebook limit on top of the per-cell one. Without bubblewrap, autograde refuses and says how
# to install it; c.Sandbox.mode = "none" grades unsandboxed (student code then runs with your rights).
c.Sandbox.mode = "bwrap"
c.Sandbox.notebook_timeout = 1800
# Hidden reference data stays in the grader's process: the kernel gets A4's hidden images without labels, shuffled,
# and the grader scores the predictions it sends back (cnncourse/autograde/hidden.py).
c.SandboxedExecute.hidden_scorers = {"a4-malaria": "cnncourse.grading_malaria:HiddenPatients"}

# Each test cell prints a keyed pass marker last; a test cell that did not fail but lacks it scores 0 and the
# notebook is flagged in the gradebook (e.g. an input transformer turned the test into `pass`).
c.Autograde.autograde_preprocessors = [  # nbgrader 0.9's list, with the course's three added
    StartGrading,
    SandboxedExecute,  # nbgrader's Execute, each kernel in a sandbox (below)
    VerifyPassMarkers,
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    FlagSubmission,
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# Feedback shows, per test cell, its score and assertion message only: no stdout of test cells, no hidden
# tests (nbgrader shows them by default), no tracebacks (they quote the hidden tests).
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    FeedbackScoresOnly,
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]

# A4 (malaria) is graded from the student's model.pt: autograde keeps the submitted file (it overwrites every
# other non-notebook file with the source's) and refuses to start without the hidden grading patients.
c.Autograde.exclude_overwriting = {"a4-malaria": ["model.pt"]}
c.CnnCourseAutograde.required_env = {"a4-malaria": ["CNNCOURSE_GRADING_DATA"]}
# The toolkit entries each assignment's test cells ask for besides the base ones (cnncourse/grading/toolkit.py): the
# entry "malaria" is cnncourse/grading_malaria.py. A graded kernel loads them before any student code; a kernel of
# another assignment never imports them. A new assignment with its own toolkit module adds a row here.
c.CnnCourseAutograde.toolkits = {"a4-malaria": ["malaria"]}

# The exchange root must exist, or the formgrader shows a banner, logs "Unwritable directory" at critical level
# and cannot release or collect. Where it cannot be made (a shared root of a hub), nbgrader says so itself.
try:
    os.makedirs(c.Exchange.root, exist_ok=True)
except OSError:
    pass
