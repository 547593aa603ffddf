"""Autograding throughput of A1: submissions per minute through a real ``nbgrader autograde``.

Builds a temporary copy of the course, regenerates the release, submits the reference answers for
N students, and times one ``nbgrader autograde`` batch for 1 student and for N students. From the two:
the fixed start-up cost and the cost per submission. Writes benchmarks/results/autograde_speed.json.

    python benchmarks/autograde_speed.py [--students 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cnncourse.autograde.inprocess import fill_answers  # noqa: E402

AID = "a1-convolution"
RESULT = ROOT / "benchmarks" / "results" / "autograde_speed.json"


def nbgrader(course: Path, *args: str) -> float:
    """Run nbgrader in ``course``; return its wall time in seconds."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, check=True,
                   capture_output=True, text=True)
    return time.perf_counter() - start


def batch(students: int) -> float:
    """Seconds for one autograde run over ``students`` correct submissions, in a fresh course copy."""
    with tempfile.TemporaryDirectory() as tmp:
        course = Path(tmp)
        shutil.copy(ROOT / "nbgrader_config.py", course)
        shutil.copytree(ROOT / "solutions" / AID, course / "solutions" / AID)
        nbgrader(course, "generate_assignment", AID, "--force")
        release = nbformat.read(course / "assignments" / AID / f"{AID}.ipynb", as_version=4)
        submission = fill_answers(release, nbformat.read(course / "solutions" / AID / f"{AID}.ipynb", as_version=4))
        for k in range(students):
            folder = course / ".nbgrader" / "submitted" / f"student{k:03d}" / AID
            folder.mkdir(parents=True)
            nbformat.write(submission, folder / f"{AID}.ipynb")
        return nbgrader(course, "autograde", AID)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=8, help="submissions in the large batch (default 8)")
    args = parser.parse_args()
    one = batch(1)
    many = batch(args.students)
    per_submission = (many - one) / (args.students - 1)
    result = {
        "assignment": AID,
        "students": args.students,
        "batch_wall_s": round(many, 2),
        "single_wall_s": round(one, 2),
        "startup_s": round(one - per_submission, 2),
        "per_submission_s": round(per_submission, 2),
        "submissions_per_minute": round(60 * args.students / many, 1),
        "submissions_per_minute_marginal": round(60 / per_submission, 1),
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "note": "wall time of `nbgrader autograde` (kernel start, `import torch`, all cells incl. hidden tests) "
                "per batch; other jobs shared the machine, so treat as an order of magnitude",
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
