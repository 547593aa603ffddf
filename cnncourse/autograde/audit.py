"""Audit an assignment's submissions for ways around grading (``make audit``).

Static: every cell a student could write (answer cells and cells they added) is compared with the course
package's source (code pasted from ``cnncourse``: :mod:`cnncourse.autograde.copied`) and scanned, comments
removed, for tampering with the execution machinery (IPython hooks, tracers, exception handlers), threads
and processes, frame and source inspection, reading course or gradebook files, and other ways around the
guard (torch's function-mode machinery, ``sys.modules``, changing torch or the grader); locked cells the
student edited or deleted are reported too. Runtime: the autograded notebook is read for test cells that
lost their pass marker, found torch/the grader changed, or caught threads; and a notebook whose kernel
died. Each finding names the student, the cell and the reason; students with a finding of severity
"flag" are listed for manual review and flagged in the gradebook.
"""

from __future__ import annotations

import io
import json
import re
import tokenize
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbgrader.api import Gradebook, MissingEntry

from cnncourse.autograde import cells
from cnncourse.autograde.copied import copied_from_package
from cnncourse.autograde.parallel import course_path, load_config, submitted_students
from cnncourse.autograde.preprocessors import flag_in_gradebook

__all__ = ["Finding", "AuditReport", "RULES", "scan_source", "audit"]

# (category, pattern, reason[, severity]): matched on a cell's code with its comments removed.
RULES: list[tuple[str, ...]] = [
    ("execution machinery", r"\bget_ipython\b|\b_ip\b|\bInteractiveShell\b", "reaches the IPython shell"),
    ("execution machinery", r"input_transformers|ast_transformers|set_custom_exc|\bevents\.register\b"
                            r"|register_magic|run_cell|\bexcepthook\b|showtraceback", "hooks cell execution"),
    ("execution machinery", r"\bsettrace\b|\bsetprofile\b|\bf_trace\b|\bf_lineno\b", "installs a tracer"),
    ("execution machinery", r"^\s*[%!]", "IPython magic or shell command"),
    ("execution machinery", r"\bos\._exit\b|\bsys\.exit\b|(?<![\w.])(exit|quit)\s*\(", "ends the kernel"),
    ("threads/processes", r"\bthreading\b|\b_thread\b|concurrent\.futures|\bmultiprocessing\b|\bsubprocess\b"
                          r"|\bos\.(system|popen|fork|forkpty|exec\w*|spawn\w*|posix_spawn\w*|kill)\b|\bpty\b",
     "runs code on another thread or process"),
    ("frame inspection", r"\b_getframe\b|\binspect\s*\.|\bimport\s+inspect\b|\bfrom\s+inspect\b"
                         r"|\bf_back\b|\bf_locals\b|\bf_globals\b|\bgc\.get_\w+"
                         r"|\b__closure__\b|\bcell_contents\b|\b__code__\b|\bco_consts\b|\blinecache\b"
                         r"|\btraceback\.(extract|walk)_stack\b|\b_ih\b|\bIn\s*\[|\bOut\s*\[|\bhistory_manager\b",
     "inspects frames, code or the cell history"),
    ("course files", r"\.nbgrader|gradebook|nbgrader_config|\bsolutions\b|\bautograded\b|\bsubmitted\b"
                     r"|/proc/|\benviron\b|\bgetenv\b|CNNCOURSE_GRADING", "reads course, gradebook or process files"),
    ("course files", r"\bopen\s*\(|\bos\.(listdir|walk|scandir)\b|\bglob\b|\bshutil\b|\bread_text\b|\bPath\s*\(",
     "reads or writes files", "info"),
    ("around the guard", r"\bsys\.modules\b|\bimportlib\b|\b__import__\b|\bbuiltins\b|\b__builtins__\b",
     "replaces modules or builtins"),
    ("around the guard", r"torch\.overrides|TorchFunctionMode|TorchDispatchMode|_disable\w*torch_function"
                         r"|DisableTorch\w*|\btorch\._C\b|\bgrad_fn\b|torch\.library|\bctypes\b",
     "works around torch's function dispatch"),
    ("around the guard", r"\bobject\.__setattr__|\b__class__\s*=|\bsetattr\s*\(\s*(torch|F|nn|cnncourse)\b"
                         r"|^\s*(torch|F|nn|cnncourse|shapes)(\.\w+)+\s*=(?!=)|\bcnncourse\.grading\.\w+\s*=",
     "changes torch or the grader"),
    ("around the guard", r"\bpass_marker\b|\u2714|\b_KEY\b|GRADING_KEY|\bgraded_test\b|\b_tampered\b"
                         r"|\b_?check_untampered\b|\b_SNAPSHOT\b|\bTOOLKIT\b|\bdefine_cases\b|\bgrading\.(tamper|toolkit|cases)\b",
     "touches the grader's internals"),
    ("around the guard", r"(?<![\w.])(exec|eval|compile)\s*\(", "runs code built at run time"),
]
_COMPILED = [(rule[0], re.compile(rule[1], re.M), rule[2], rule[3] if len(rule) > 3 else "flag") for rule in RULES]
# Runtime: error names/messages in autograded test cells that mean tampering, not a wrong answer.
RUNTIME = [
    ("GradingError", "changed what the tests rely on", "changed torch, the builtins or the grader while graded"),
    ("GradingError", "pass marker", "a test did not report that it ran (or its marker was forged)"),
    ("LibraryCallError", "thread", "ran code on another thread or process inside a from-scratch test"),
]


@dataclass
class Finding:
    student: str
    cell: str
    category: str
    reason: str
    evidence: str
    severity: str = "flag"  # "flag": manual review; "info": worth a look


@dataclass
class AuditReport:
    assignment: str
    students: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def flagged(self) -> list[str]:
        return sorted({f.student for f in self.findings if f.severity == "flag"})

    def for_student(self, student: str) -> list[Finding]:
        return [f for f in self.findings if f.student == student]

    def __str__(self) -> str:
        lines = [f"audit of {self.assignment}: {len(self.students)} submissions, {len(self.flagged)} flagged"]
        for student in sorted({f.student for f in self.findings}):
            mark = "FLAGGED" if student in self.flagged else "note"
            lines.append(f"{student} [{mark}]")
            lines += [f"  {f.severity:4s} {f.cell}: {f.category}: {f.reason} ({f.evidence})"
                      for f in self.for_student(student)]
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"assignment": self.assignment, "students": self.students, "flagged": self.flagged,
                           "findings": [asdict(f) for f in self.findings]}, indent=2) + "\n"


def _code_only(source: str) -> str:
    """The source without comments (strings kept: a path is evidence); the raw source if it does not tokenize."""
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type != tokenize.COMMENT]
        return tokenize.untokenize(tokens)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return source


def scan_source(source: str) -> list[tuple[str, str, str, str]]:
    """``(category, reason, evidence, severity)`` for each rule one cell's code matches (once per rule)."""
    code = _code_only(source)
    hits = []
    for category, pattern, reason, severity in _COMPILED:
        match = pattern.search(code)
        if match:
            line = code[code.rfind("\n", 0, match.start()) + 1:].split("\n", 1)[0].strip()
            hits.append((category, reason, line[:100], severity))
    return hits


def _static(student: str, submitted: NotebookNode, source: NotebookNode) -> list[Finding]:
    findings = []
    locked = {cells.grade_id(c): c for c in source.cells if cells.is_locked(c)}
    present = set()
    for k, cell in enumerate(submitted.cells):
        grade_id = cells.grade_id(cell)
        present.add(grade_id)
        name = grade_id or f"added cell {k}"
        if cell.cell_type != "code":
            continue
        if grade_id in locked:
            original = locked[grade_id].source
            visible = cells.without_hidden(original)
            if cell.source.strip() not in (original.strip(), visible.strip()):
                findings.append(Finding(student, name, "locked cells", "edited a locked cell (nbgrader restores it)",
                                        cell.source.strip().splitlines()[0][:100] if cell.source.strip() else ""))
            continue
        for category, reason, evidence, severity in scan_source(cell.source):
            findings.append(Finding(student, name, category, reason, evidence, severity))
        match = copied_from_package(cell.source)
        if match is not None:
            findings.append(Finding(student, name, "copied code", f"{match.share:.0%} of its code is in the course "
                                    f"package's {match.module}", match.module))
    for grade_id, cell in locked.items():
        if cells.is_test(cell) and grade_id not in present:
            findings.append(Finding(student, grade_id, "locked cells", "deleted a test cell (it scores 0)", ""))
    return findings


def _runtime(student: str, autograded: Path, graded: bool) -> list[Finding]:
    if not autograded.exists():
        if graded:  # in the gradebook, yet no autograded notebook: nbgrader gave up on it
            return [Finding(student, "-", "runtime", "the notebook did not finish autograding (kernel died?)", "")]
        return [Finding(student, "-", "runtime", "not autograded yet: static checks only", "", "info")]
    nb = nbformat.read(autograded, as_version=4)
    findings = []
    for cell in nb.cells:
        if not cells.is_test(cell):
            continue
        for output in cell.get("outputs", []):
            if output.output_type != "error":
                continue
            for ename, text, reason in RUNTIME:
                if output.ename == ename and text in str(output.evalue):
                    findings.append(Finding(student, cells.grade_id(cell), "runtime", reason, str(output.evalue)[:160]))
            if output.ename == "CellTimeoutError":
                findings.append(Finding(student, cells.grade_id(cell), "runtime", "a test timed out", "", "info"))
    return findings


def _in_gradebook(db_url: str, assignment: str, notebook: str, student: str) -> bool:
    with Gradebook(db_url) as gb:
        try:
            gb.find_submission_notebook(notebook, assignment, student)
        except MissingEntry:
            return False
    return True


def audit(course: Path | str, assignment: str, *, mark: bool = True) -> AuditReport:
    """Audit every submission of ``assignment``; with ``mark``, flag the flagged ones in the gradebook."""
    course = Path(course).resolve()
    config = load_config(course)
    source_dir = course_path(config, course, "source_directory", "source") / assignment
    submitted_dir = course_path(config, course, "submitted_directory", "submitted")
    autograded_dir = course_path(config, course, "autograded_directory", "autograded")
    report = AuditReport(assignment, submitted_students(course, config, assignment))
    for source_path in sorted(source_dir.glob("*.ipynb")):
        source = nbformat.read(source_path, as_version=4)
        for student in report.students:
            path = submitted_dir / student / assignment / source_path.name
            if not path.exists():
                continue
            report.findings += _static(student, nbformat.read(path, as_version=4), source)
            report.findings += _runtime(student, autograded_dir / student / assignment / source_path.name,
                                        _in_gradebook(config.CourseDirectory.db_url, assignment, source_path.stem,
                                                      student))
            if mark and student in report.flagged:
                flag_in_gradebook(config.CourseDirectory.db_url, assignment, source_path.stem, student)
    return report
