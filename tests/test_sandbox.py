"""Autograde's sandbox (cnncourse/autograde/sandbox.py) against an escape batch.

A tiny assignment (one answer, one test cell) is autograded in parallel (``make autograde JOBS=2``) for two honest
students and one submission per escape attempt. Each attempt cell prints what it achieved (``ESCAPE {json}``);
the test also looks for traces on the host. Every attempt is blocked, the batch finishes, the honest students
score full marks, and nothing a kernel wrote survives. Skipped only where bubblewrap cannot run (the reason is
shown). Cost: about 60 s on 2 cores (14 kernels, one of them killed by the whole-notebook limit).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from cnncourse.autograde.sandbox import Sandbox, SandboxUnavailable
from tests.grading_support import ROOT, nbgrader, nbgrader_env, sandbox_unavailable

AID = "escape"
NOTEBOOK_TIMEOUT = 30  # the sleeper's kernel is killed after this

ANSWER = "def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION"
TEST = ('from cnncourse.grading import graded_test\n\n\n@graded_test("test_add")\ndef _test(add):\n'
        '    assert add(2, 3) == 5, "add(2, 3) should be 5"')
RECORD = ('import json, os, signal, socket, time\n\n\ndef record(worked, detail=""):\n'
          '    print("ESCAPE " + json.dumps({"worked": bool(worked), "detail": str(detail)[:300]}), flush=True)\n')

# Each escape: the code of the cell a student adds after the test cell. __COURSE__, __HIDDEN__, __HOME__, __PORT__
# and __TOKEN__ are filled in by the test.
ESCAPES = {
    "reads_solutions": """
try:
    record("BEGIN SOLUTION" in open("__COURSE__/solutions/escape/escape.ipynb").read(), "read the source")
except OSError as err:
    record(False, err)""",
    "reads_gradebook": """
try:
    with open("__COURSE__/.nbgrader/gradebook.db", "rb") as f:
        record(f.read(16).startswith(b"SQLite"), "read the gradebook")
except OSError as err:
    record(False, err)""",
    "writes_gradebook": """
try:
    with open("__COURSE__/.nbgrader/gradebook.db", "r+b") as f:
        f.write(b"x")
    record(True, "wrote the gradebook")
except OSError as err:
    record(False, err)""",
    "reads_other_student": """
try:
    record("add" in open("__COURSE__/.nbgrader/submitted/alice/escape/escape.ipynb").read(), "read alice's")
except OSError as err:
    record(False, err)""",
    "changes_other_student": """
try:
    with open("__COURSE__/.nbgrader/submitted/alice/escape/escape.ipynb", "a") as f:
        f.write(" ")
    record(True, "changed alice's")
except OSError as err:
    record(False, err)""",
    "reads_grading_data": """
found = [name for name in os.environ if "GRADING_DATA" in name]
try:
    found.append(open("__HIDDEN__/labels.csv").read()[:20])
except OSError:
    pass
record(found, found)""",
    "reads_instructor_home": """
try:
    record(True, open("__HOME__/secret.txt").read())
except OSError as err:
    record(False, err)""",
    "reads_environment": """
seen = [k for k in os.environ if k == "CNNCOURSE_TEST_SECRET"]
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        if b"CNNCOURSE_TEST_SECRET=" in open(f"/proc/{pid}/environ", "rb").read():
            seen.append(pid)
    except OSError:
        pass
record(seen, seen)""",
    "reaches_loopback": """
try:
    socket.create_connection(("127.0.0.1", __PORT__), timeout=3).close()
    record(True, "connected")
except OSError as err:
    record(False, err)""",
    "writes_outside": """
from ipykernel.connect import get_connection_file

run_dir = os.path.dirname(get_connection_file())  # the host folder of its sockets: sealed once they exist
written = []
for path in ["__COURSE__/pwned-__TOKEN__", "__COURSE__/.nbgrader/pwned-__TOKEN__", "/tmp/pwned-__TOKEN__",
             "/dev/shm/pwned-__TOKEN__", "pwned-__TOKEN__", f"{run_dir}/pwned-__TOKEN__"]:
    try:
        open(path, "w").write("x")
        written.append(path)
    except OSError:
        pass
record([p for p in written if p.startswith(("__COURSE__", run_dir))], written)""",
    "kills_parent": """
killed = []
for pid in sorted({os.getppid(), 1, *[int(p) for p in os.listdir("/proc") if p.isdigit()]} - {os.getpid()}):
    try:
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
    except OSError:
        pass
record(killed, killed)""",
    "fork_bomb": """
n, error = 0, None
try:
    while n < 5000:
        if os.fork() == 0:
            time.sleep(5)  # long enough to hold the processes; then the kernel can report
            os._exit(0)
        n += 1
except OSError as err:
    error = err
record(error is None, f"{n} processes, then {error}")""",
    "allocates_50_gb": """
try:
    block = bytearray(50 * 2**30)
    record(True, "50 GB allocated")
except MemoryError as err:
    record(False, repr(err))""",
    "fills_disk": """
wrote = {}
for folder in (".", "/tmp", "/dev/shm", "/home/student"):
    n = 0
    try:
        with open(f"{folder}/fill-__TOKEN__", "wb") as f:
            while n < 2048:
                f.write(bytes(2**20))
                f.flush()
                n += 1
    except OSError:
        pass
    wrote[folder] = n
record(max(wrote.values()) >= 2048, wrote)""",
    "sleeps_forever": """
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the per-cell timeout's interrupt is ignored
time.sleep(10**6)""",
}
ANSWERS = {"alice": "def add(a, b):\n    return a + b", "bob": "def add(x, y):\n    return y + x"}
HONEST = tuple(ANSWERS)


def source_notebook() -> nbformat.NotebookNode:
    meta = {"schema_version": 3, "task": False}
    nb = new_notebook(cells=[
        new_code_cell(ANSWER, metadata={"nbgrader": {**meta, "grade": False, "grade_id": "answer", "locked": False,
                                                     "solution": True}}),
        new_code_cell(TEST, metadata={"nbgrader": {**meta, "grade": True, "grade_id": "test_add", "locked": True,
                                                   "points": 1, "solution": False}}),
    ])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


class Listener:
    """A TCP server on 127.0.0.1 that counts connections."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port, self.connections = self.server.getsockname()[1], 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


@pytest.fixture(scope="module")
def escape_batch(tmp_path_factory):
    if why := sandbox_unavailable():
        pytest.skip(f"autograde's sandbox is unavailable here: {why}")
    tmp = tmp_path_factory.mktemp("escape")
    course, hidden, home = tmp / "course", tmp / "hidden", tmp / "home"
    for folder in (course / "solutions" / AID, hidden, home):
        folder.mkdir(parents=True)
    (hidden / "labels.csv").write_text("cell,label\nc1.png,Parasitized\n")
    (home / "secret.txt").write_text("the instructor's secret\n")
    config = (ROOT / "nbgrader_config.py").read_text()
    (course / "nbgrader_config.py").write_text(config + f"""
c.Execute.timeout = 10
c.Sandbox.notebook_timeout = {NOTEBOOK_TIMEOUT}
c.Sandbox.tmpfs_mb = 64
c.Sandbox.file_size_mb = 16
c.Sandbox.processes = 128
""")
    nbformat.write(source_notebook(), course / "solutions" / AID / f"{AID}.ipynb")
    nbgrader(course, "generate_assignment", AID, "--force")
    release = nbformat.read(course / "assignments" / AID / f"{AID}.ipynb", as_version=4)
    listener, token = Listener(), secrets.token_hex(8)
    fills = {"__COURSE__": str(course), "__HIDDEN__": str(hidden), "__HOME__": str(home),
             "__PORT__": str(listener.port), "__TOKEN__": token}
    students = {name: [] for name in HONEST} | {f"mallory_{name}": [RECORD + code] for name, code in ESCAPES.items()}
    for student, extra in students.items():
        nb = nbformat.from_dict(json.loads(json.dumps(release)))
        nb.cells[0].source = ANSWERS.get(student, ANSWERS["alice"])
        for code in extra:
            for key, value in fills.items():
                code = code.replace(key, value)
            nb.cells.append(new_code_cell(code))
        folder = course / ".nbgrader" / "submitted" / student / AID
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{AID}.ipynb")
    before = {p: p.read_bytes() for p in (course / ".nbgrader" / "submitted").rglob("*") if p.is_file()}
    before.update({p: p.read_bytes() for p in (course / "solutions").rglob("*") if p.is_file()})
    env = dict(nbgrader_env(), CNNCOURSE_TEST_SECRET="s3cret", HOME=str(home), CNNCOURSE_GRADING_DATA=str(hidden))
    run = subprocess.run([sys.executable, "-m", "cnncourse.autograde", "autograde", AID, "--jobs", "2",
                          "--no-progress"], cwd=course, env=env, capture_output=True, text=True, timeout=600)
    return {"course": course, "run": run, "listener": listener, "token": token, "before": before}


def attempt(course: Path, student: str) -> dict | None:
    path = course / ".nbgrader" / "autograded" / student / AID / f"{AID}.ipynb"
    if not path.exists():
        return None
    outputs = nbformat.read(path, as_version=4).cells[-1].get("outputs", [])
    text = "\n".join(o.get("text", "") or o.get("evalue", "") for o in outputs)
    found = re.findall(r"^ESCAPE (\{.*\})$", text, re.M)
    return json.loads(found[-1]) if found else {"worked": None, "detail": text[-300:]}


def test_every_escape_is_blocked(escape_batch):
    course, run = escape_batch["course"], escape_batch["run"]
    summary = f"escape: {len(HONEST) + len(ESCAPES)} graded, 0 failed to run, 0 flagged"
    assert summary in run.stdout, run.stdout + run.stderr[-3000:]
    results = {name: attempt(course, f"mallory_{name}") for name in ESCAPES if name != "sleeps_forever"}
    worked = {name: r for name, r in results.items() if r is None or r["worked"] is not False}
    assert not worked, f"escapes not blocked (or not recorded): {worked}"
    assert escape_batch["listener"].connections == 0
    sleeper = attempt(course, "mallory_sleeps_forever")  # stopped (cell or notebook limit), its cell scored 0
    assert sleeper["worked"] is None and "not run to the end" in sleeper["detail"], sleeper


def test_honest_students_unharmed(escape_batch):
    """The honest students, graded beside the escapes, score full marks, unflagged; so do the escapes' answers
    (graded before their attempts; the sleeper's kernel was stopped by the notebook's limit after it)."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{escape_batch['course'] / '.nbgrader' / 'gradebook.db'}") as gb:
        for student in [*HONEST, *(f"mallory_{n}" for n in ESCAPES )]:
            nb = gb.find_submission_notebook(AID, AID, student)
            assert (nb.score, nb.flagged) == (1.0, False), student


def test_nothing_written_survives(escape_batch):
    """No file a kernel wrote exists on the host; submissions and solutions are byte for byte what they were."""
    course, token = escape_batch["course"], escape_batch["token"]
    for folder in (course, Path("/tmp"), Path("/dev/shm")):
        leaked = [p for p in folder.rglob(f"*{token}*")] if folder == course else list(folder.glob(f"*{token}*"))
        assert not leaked, leaked
    for path, data in escape_batch["before"].items():
        assert path.read_bytes() == data, f"{path} changed"


def test_refuses_without_bubblewrap(monkeypatch):
    """No bwrap on PATH: autograde refuses with how to install it and how to accept the risk."""
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SandboxUnavailable, match=r"apt-get install bubblewrap.*mode = \"none\""):
        Sandbox().check()
    Sandbox(mode="none").check()  # the risk accepted: no check


def test_kernel_environment_is_an_allow_list():
    """The kernel's command clears the environment and passes only the allow-list (never the grading data)."""
    if os.geteuid() != 0:
        pytest.skip("the uid drop is only done when grading as root")
    cmd = Sandbox().command(["python"], "/tmp", "/tmp/run", 3, None,
                            {"CNNCOURSE_QUICK": "1", "CNNCOURSE_GRADING_DATA": "/secret", "AWS_SECRET": "x"})
    assert "--clearenv" in cmd and "/secret" not in cmd and "x" not in cmd
    assert cmd[cmd.index("CNNCOURSE_QUICK") + 1] == "1"
    assert f"--reuid={Sandbox().uid + 3}" in cmd


def test_read_only_folder_under_tmp_stays_visible(tmp_path):
    """A read-only mount below /tmp (the hub keeps its users' copied Python there) is bound over the kernel's
    private /tmp, not hidden by it (it was, and every kernel on the hub failed to start)."""
    if reason := sandbox_unavailable():
        pytest.skip(reason)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "note.txt").write_text("visible")
    for path in (tmp_path, shared):
        path.chmod(0o755)
    (shared / "note.txt").chmod(0o644)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    cmd = Sandbox(read_only=[str(shared)]).command(
        ["/bin/sh", "-c", f"cat {shared}/note.txt >&2 && touch /tmp/mine && ls /tmp >&2"], str(work),
        str(run_dir), 0)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "visible" in done.stderr and "mine" in done.stderr  # the file, and /tmp still private and writable
    assert not Path("/tmp/mine").exists()
