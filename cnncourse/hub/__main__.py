"""Instructors' commands for the course on JupyterHub (settings from ``CNNCOURSE_*`` variables, hub/README.md).

    python -m cnncourse.hub setup                   (root) grader account, course, exchange, the users' Python
    python -m cnncourse.hub roster roster.csv       (root) Unix accounts + nbgrader students from a roster CSV
    python -m cnncourse.hub autograde a1-convolution  (grader) autograde the collected submissions
    python -m cnncourse.hub canvas --to grades.csv  (grader) the Canvas gradebook CSV
"""

from __future__ import annotations

import argparse
import csv
import os
import pwd
import shutil
import sys
from pathlib import Path

from cnncourse.hub.settings import COURSE_ID, HubSettings


def setup(settings: HubSettings) -> None:
    from cnncourse.hub import accounts, course, userenv

    settings.state.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.state, 0o755)
    if accounts.ensure_account(settings.grader, settings.home_base, "cnncourse grader (formgrader service)"):
        print(f"created the grader account {settings.grader}")
    course.make_course(settings.course_root, settings.grader)
    exchange = course.make_exchange(settings.exchange, settings.grader)
    python = userenv.make_userenv(settings.state / "userenv")
    print(f"course {settings.course_root} (owner {settings.grader}), exchange {exchange}, users' Python {python}")


def roster(settings: HubSettings, path: Path, passwords: Path) -> None:
    from nbgrader.api import Gradebook

    from cnncourse.autograde.parallel import load_config
    from cnncourse.hub import accounts
    from cnncourse.hub.roster import read_roster

    members = read_roster(path)
    if path.resolve() != settings.roster.resolve():
        shutil.copyfile(path, settings.roster)
        os.chmod(settings.roster, 0o644)
    new = {}
    for m in members:
        if accounts.ensure_account(m.username, settings.home_base, f"{m.first_name} {m.last_name}".strip()):
            new[m.username] = accounts.set_password(m.username)
    if new:
        fresh = not passwords.exists()
        with open(os.open(passwords, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a", newline="") as f:
            writer = csv.writer(f)
            if fresh:
                writer.writerow(["username", "password"])
            writer.writerows(new.items())
    db_url = load_config(settings.course_root).CourseDirectory.db_url
    # a new gradebook is made by nbgrader's `alembic`, found on PATH
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    with Gradebook(db_url, COURSE_ID) as gb:
        for m in members:
            if m.role == "student":
                gb.update_or_create_student(m.username, first_name=m.first_name or None,
                                            last_name=m.last_name or None, email=m.email or None)
    db = Path(db_url.removeprefix("sqlite:///"))
    if db.exists():
        entry = pwd.getpwnam(settings.grader)
        os.chown(db, entry.pw_uid, entry.pw_gid)
    print(f"{len(members)} on the roster ({len(new)} new accounts, passwords in {passwords}); "
          f"{sum(m.role == 'student' for m in members)} students in the gradebook")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnncourse.hub", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="(root) grader account, course folder, exchange, the users' Python")
    r = sub.add_parser("roster", help="(root) Unix accounts and nbgrader students from a roster CSV")
    r.add_argument("csv", type=Path, help="columns: username,first_name,last_name,email,role,section,sis_id")
    r.add_argument("--passwords", type=Path, default=None,
                   help="where new accounts' generated passwords go (mode 0600; default STATE/passwords.csv)")
    a = sub.add_parser("autograde", help="(grader) autograde the collected submissions of an assignment")
    a.add_argument("assignment")
    a.add_argument("--jobs", type=int, default=2)
    c = sub.add_parser("canvas", help="(grader) write the Canvas gradebook CSV")
    c.add_argument("--to", type=Path, required=True, help="the CSV file to write")
    args = parser.parse_args(argv)
    settings = HubSettings.from_env()
    try:
        if args.command == "setup":
            setup(settings)
        elif args.command == "roster":
            roster(settings, args.csv, args.passwords or settings.state / "passwords.csv")
        elif args.command == "autograde":
            from cnncourse.hub.grading import autograde

            return autograde(settings.course_root, args.assignment, args.jobs)
        else:
            from cnncourse.autograde.parallel import load_config
            from cnncourse.hub.canvas import write_canvas_csv
            from cnncourse.hub.roster import read_roster

            members = read_roster(settings.roster) if settings.roster.exists() else []
            db_url = load_config(settings.course_root).CourseDirectory.db_url
            print(f"wrote {write_canvas_csv(args.to, db_url, members)}")
    except (OSError, ValueError, RuntimeError) as err:
        print(f"python -m cnncourse.hub {args.command}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
