"""The hub's roster CSV and settings: bad input gets a message naming the value and the fix (no root needed)."""

from __future__ import annotations

import pytest

from cnncourse.hub.roster import Member, by_role, read_roster
from cnncourse.hub.settings import HubSettings


def write(tmp_path, text: str):
    path = tmp_path / "roster.csv"
    path.write_text(text)
    return path


def test_roster_rows_roles_and_defaults(tmp_path):
    members = read_roster(write(tmp_path, "username,first_name,last_name,role,sis_id\n"
                                          "alice,Alice,Liddell,,S1\n tutor ,Ada,Lovelace,instructor,\nbob,,,,\n"))
    assert [m.username for m in members] == ["alice", "tutor", "bob"]
    assert by_role(members, "student") == ["alice", "bob"] and by_role(members, "instructor") == ["tutor"]
    assert members[0] == Member("alice", "Alice", "Liddell", role="student", sis_id="S1")
    assert members[0].sortable_name == "Liddell, Alice" and members[2].sortable_name == "bob"


@pytest.mark.parametrize("text, message", [
    ("user,role\nalice,student\n", "no 'username' column"),
    ("username,shoe_size\nalice,42\n", "unknown column(s) ['shoe_size']"),
    ("username,role\nAlice Smith,student\n", "username 'Alice Smith' is not a valid Unix account name"),
    ("username,role\n1alice,student\n", "username '1alice'"),
    ("username,role\nalice,teacher\n", "role 'teacher' of alice: use one of student, instructor"),
    ("username\nalice\nalice\n", "alice is listed twice"),
])
def test_roster_errors_name_the_value_and_the_fix(tmp_path, text, message):
    with pytest.raises(ValueError) as err:
        read_roster(write(tmp_path, text))
    assert message in str(err.value)


def test_missing_roster_and_bad_settings(tmp_path):
    with pytest.raises(FileNotFoundError, match="write a CSV with the columns username"):
        read_roster(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="CNNCOURSE_HUB_PORT='eighty' is not a number"):
        HubSettings.from_env({"CNNCOURSE_HUB_PORT": "eighty"})
    s = HubSettings.from_env({"CNNCOURSE_HUB_STATE": str(tmp_path)})
    assert s.exchange == tmp_path / "exchange" and s.course_root == tmp_path / "course" and s.ip == "127.0.0.1"
