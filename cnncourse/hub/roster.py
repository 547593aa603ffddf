"""The roster CSV: one row per person, read by the hub (allowed users, roles) and by ``python -m cnncourse.hub roster``.

Columns (header row required; only ``username`` must be filled)::

    username,first_name,last_name,email,role,section,sis_id
    alice,Alice,Liddell,alice@example.org,student,A,S001
    tutor,Ada,Lovelace,ada@example.org,instructor,,

``role`` is ``student`` (the default when empty) or ``instructor``. A username is a Unix account name: lower-case
letters, digits, ``_`` and ``-``, starting with a letter or ``_``, at most 32 characters.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

ROLES = ("student", "instructor")
COLUMNS = ("username", "first_name", "last_name", "email", "role", "section", "sis_id")
USERNAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class Member:
    """One row of the roster."""

    username: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    role: str = "student"
    section: str = ""
    sis_id: str = ""

    @property
    def sortable_name(self) -> str:
        """``Last, First`` as an LMS shows it (the username when the roster has no name)."""
        if self.last_name or self.first_name:
            return ", ".join(filter(None, [self.last_name, self.first_name]))
        return self.username


def read_roster(path: Path | str) -> list[Member]:
    """The roster's rows, checked: known columns and roles, valid and unique usernames."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"roster {path} does not exist: write a CSV with the columns {', '.join(COLUMNS)}")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        if "username" not in header:
            raise ValueError(f"roster {path}: no 'username' column in the header {header}: the first row must name "
                             f"the columns, e.g. {','.join(COLUMNS)}")
        unknown = set(header) - set(COLUMNS)
        if unknown:
            raise ValueError(f"roster {path}: unknown column(s) {sorted(unknown)}: use only {', '.join(COLUMNS)}")
        members, seen = [], set()
        for line, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            member = Member(**{k: v for k, v in row.items() if v})
            if not USERNAME.fullmatch(member.username):
                raise ValueError(f"roster {path}, line {line}: username {member.username!r} is not a valid Unix "
                                 "account name: use lower-case letters, digits, '_' or '-', starting with a letter")
            if member.role not in ROLES:
                raise ValueError(f"roster {path}, line {line}: role {member.role!r} of {member.username}: use one "
                                 f"of {', '.join(ROLES)}")
            if member.username in seen:
                raise ValueError(f"roster {path}, line {line}: {member.username} is listed twice: keep one row")
            seen.add(member.username)
            members.append(member)
    return members


def by_role(members: list[Member], role: str) -> list[str]:
    """Usernames of the members with ``role``."""
    return [m.username for m in members if m.role == role]
