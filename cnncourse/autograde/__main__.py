"""Instructors' commands: ``python -m cnncourse.autograde {autograde,audit,leaderboard} ASSIGNMENT`` (course root)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnncourse.autograde", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    grade = sub.add_parser("autograde", help="autograde every submission in parallel (make autograde JOBS=n)")
    grade.add_argument("assignment")
    grade.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    grade.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: the config's)")
    grade.add_argument("--force", action="store_true", help="grade again students already autograded")
    grade.add_argument("--no-progress", action="store_true", help="no progress bar")
    audit = sub.add_parser("audit", help="report submissions that tamper with grading (make audit)")
    audit.add_argument("assignment")
    audit.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    board = sub.add_parser("leaderboard", help="rank A4 submissions (make leaderboard ASSIGNMENTS=a4-malaria)")
    board.add_argument("assignment")
    for p in (grade, audit, board):
        p.add_argument("--course", type=Path, default=Path.cwd(), help="course root (default: current directory)")
    args = parser.parse_args(argv)
    if args.command == "autograde":
        from cnncourse.autograde.parallel import autograde

        try:
            summary = autograde(args.course, args.assignment, args.jobs, timeout=args.timeout, force=args.force,
                                progress=not args.no_progress)
        except RuntimeError as err:  # a missing required environment variable, no release: a message, no traceback
            print(f"autograde {args.assignment}: {err}", file=sys.stderr)
            return 2
        print(summary)
        return 1 if summary.failed else 0
    if args.command == "leaderboard":
        from cnncourse.autograde.leaderboard import write_leaderboard

        for path in write_leaderboard(args.course, args.assignment):
            print(f"wrote {path}")
        return 0
    from cnncourse.autograde.audit import audit

    report = audit(args.course, args.assignment)
    print(report)
    if args.json:
        args.json.write_text(report.to_json())
    return 1 if report.flagged else 0


if __name__ == "__main__":
    sys.exit(main())
