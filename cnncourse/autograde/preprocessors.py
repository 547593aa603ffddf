"""nbgrader preprocessors of the course (listed in ``nbgrader_config.py``).

Autograde runs ``StartGrading`` -> ``Execute`` -> ``VerifyPassMarkers`` -> ... -> ``SaveAutoGrades`` ->
``FlagSubmission``; feedback runs ``FeedbackScoresOnly`` before ``ClearHiddenTests``.
"""

from __future__ import annotations

import secrets

from nbformat import NotebookNode
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor

from cnncourse.autograde import cells
from cnncourse.marker import pass_marker


def stdout_of(cell: NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.output_type == "stream" and o.get("name") == "stdout")


def failed(cell: NotebookNode) -> bool:
    """What nbgrader scores 0: an error output or anything written to stderr."""
    return any(o.output_type == "error" or (o.output_type == "stream" and o.get("name") == "stderr")
               for o in cell.get("outputs", []))


def check_markers(nb: NotebookNode, key: str | None) -> list[dict]:
    """Score 0 every test cell that did not fail yet shows no valid pass marker; return why, per cell.

    The error output goes first, so that nbgrader scores 0 even if the cell also shows a number
    (partial credit).
    """
    findings = []
    for cell in nb.cells:
        if not cells.is_test(cell) or failed(cell):
            continue
        grade_id = cells.grade_id(cell)
        lines = stdout_of(cell).splitlines()
        if pass_marker(grade_id, key) in lines:
            continue
        if any(line.startswith(pass_marker(grade_id, None)) for line in lines):
            reason = "forged pass marker (the test's marker does not carry this run's key)"
        else:
            reason = "no pass marker: the test did not run to the end"
        cell.outputs.insert(0, NotebookNode(output_type="error", ename="GradingError", evalue=reason,
                                            traceback=[f"GradingError: {reason}; flagged for review"]))
        findings.append({"cell": grade_id, "reason": reason})
    return findings


class StartGrading(NbGraderPreprocessor):
    """Before Execute: a fresh key for this notebook, in ``resources`` only. ``SandboxedExecute`` puts it in the
    environment of this notebook's kernel alone (never the grader's own), and ``cnncourse.grading`` removes it
    there at import, before any cell."""

    def preprocess(self, nb, resources):
        resources.setdefault("cnncourse", {})["key"] = secrets.token_hex(16)
        return nb, resources


class VerifyPassMarkers(NbGraderPreprocessor):
    """After Execute: a test cell without its keyed pass marker scores 0, and the notebook is flagged."""

    def preprocess(self, nb, resources):
        state = resources.setdefault("cnncourse", {})
        state["flags"] = check_markers(nb, state.get("key"))
        for finding in state["flags"]:
            self.log.warning("%s: %s flagged: %s", resources.get("nbgrader", {}).get("student"),
                             finding["cell"], finding["reason"])
        return nb, resources


class FlagSubmission(NbGraderPreprocessor):
    """After SaveAutoGrades: mark a notebook with findings as flagged in the gradebook (formgrader shows it)."""

    def preprocess(self, nb, resources):
        info, flags = resources.get("nbgrader", {}), resources.get("cnncourse", {}).get("flags")
        if flags and "db_url" in info:
            flag_in_gradebook(info["db_url"], info["assignment"], info["notebook"], info["student"])
        return nb, resources


def flag_in_gradebook(db_url: str, assignment: str, notebook: str, student: str) -> bool:
    """Set ``flagged`` on one submitted notebook; False if it is not in the gradebook."""
    with Gradebook(db_url) as gb:
        try:
            submitted = gb.find_submission_notebook(notebook, assignment, student)
        except MissingEntry:
            return False
        submitted.flagged = True
        gb.db.commit()
    return True


class FeedbackScoresOnly(NbGraderPreprocessor):
    """Feedback shows, per test cell, its score and the assertion message only, and no hidden test code anywhere.

    A test cell's stdout (warnings, pass marker, anything the student's code printed) is dropped, and an
    error keeps only ``Name: message`` (a traceback quotes the hidden tests). In every cell's outputs, a
    line quoting a hidden test line is replaced (a student's code can read the running cell's source and
    print it, raise it or keep it for a later cell).
    """

    def preprocess(self, nb, resources):
        self.hidden = set()
        for cell in nb.cells:
            for block in cells.hidden_blocks(cell.source):
                self.hidden |= {line.strip() for line in block.splitlines() if len(line.strip()) >= 8}
        return super().preprocess(nb, resources)

    def scrub(self, text: str) -> str:
        lines = text.splitlines(keepends=True)
        kept = [line if cells.HIDDEN not in line and not any(h in line for h in self.hidden)
                else "[a line of a hidden test, removed]\n" for line in lines]
        return "".join(kept)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        if cells.is_test(cell):
            cell.outputs = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                output.evalue = self.scrub(str(output.evalue))[:1000]
                output.traceback = [f"{output.ename}: {output.evalue}"] if cells.is_test(cell) else \
                    [self.scrub(line) for line in output.traceback]
            elif output.output_type == "stream":
                output.text = self.scrub(output.text)
            else:
                for mime, value in output.get("data", {}).items():
                    if mime.startswith("text/"):
                        output.data[mime] = self.scrub(value if isinstance(value, str) else "".join(value))
        return cell, resources
