"""Grades for an LMS: a Canvas gradebook CSV from the nbgrader gradebook (nbgrader has no LMS export, #530).

Canvas imports the layout of its own gradebook export: ``Student, ID, SIS User ID, SIS Login ID, Section``, one
column per assignment (here the nbgrader assignment name), a ``Points Possible`` row, then one row per student.
Students are matched on ``SIS User ID`` (the roster's ``sis_id``) or ``SIS Login ID`` (the username); the
Canvas-internal ``ID`` is left empty. A score is the assignment's total (autograded plus manual points, after
late penalties, as nbgrader computes it); an assignment a student did not submit is left blank (Canvas then
keeps the cell ungraded) rather than written as 0.
"""

from __future__ import annotations

import csv
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from cnncourse.hub.roster import Member
from cnncourse.hub.settings import COURSE_ID

HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]


def gradebook_table(db_url: str, course_id: str = COURSE_ID) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """``({assignment: points possible}, {student: {assignment: score}})`` from the gradebook (submitted only)."""
    with Gradebook(db_url, course_id) as gb:
        possible = {a.name: float(a.max_score) for a in sorted(gb.assignments, key=lambda a: (a.duedate is None,
                                                                                            a.duedate, a.name))}
        scores: dict[str, dict[str, float]] = {}
        for student in gb.students:
            row = scores.setdefault(student.id, {})
            for name in possible:
                try:
                    row[name] = float(gb.find_submission(name, student.id).score)
                except MissingEntry:
                    pass
    return possible, scores


def write_canvas_csv(path: Path | str, db_url: str, roster: list[Member], course_id: str = COURSE_ID) -> Path:
    """Write the Canvas gradebook CSV of every student on the roster or in the gradebook; returns ``path``."""
    possible, scores = gradebook_table(db_url, course_id)
    members = {m.username: m for m in roster if m.role == "student"}
    students = list(members) + sorted(set(scores) - set(members))
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(HEADER + list(possible))
        out.writerow(["    Points Possible", "", "", "", ""] + [f"{p:g}" for p in possible.values()])
        for username in students:
            m = members.get(username, Member(username))
            row = scores.get(username, {})
            out.writerow([m.sortable_name, "", m.sis_id, username, m.section]
                         + [f"{row[a]:g}" if a in row else "" for a in possible])
    return path
