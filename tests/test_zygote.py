"""Warm kernels (cnncourse/autograde/zygote.py): each notebook's kernel, forked by the zygote, starts from a state no
other notebook touched, has no privilege, and runs torch's and numpy's thread pools after the fork.

A polluter notebook changes everything it can reach (globals, builtins, torch's functions and settings, the
environment, files in every writable place, a process that outlives it) and tries to stop every other process of its
sandbox, the zygote included. An observer notebook records what it sees; it sees the same before and after the
polluter, and what a cold kernel sees. Needs bubblewrap and root (warm kernels are only used when grading as root).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

from cnncourse.autograde import zygote
from cnncourse.autograde.kernel import SandboxedExecute
from tests.grading_support import ROOT, sandbox_unavailable

OBSERVE = r'''
import builtins, json, os, sys, time
import numpy, torch

time.sleep(4)  # a process the polluter left would have written /tmp/late.txt by now


def status(name):
    return next(line.split()[1] for line in open("/proc/self/status") if line.startswith(name + ":"))


print("STATE " + json.dumps({
    "global": "POLLUTED" in globals(), "builtins": hasattr(builtins, "polluted"),
    "torch.add": type(torch.add).__name__, "dtype": str(torch.get_default_dtype()), "threads": torch.get_num_threads(),
    "torch seed": torch.initial_seed(), "grad": torch.is_grad_enabled(), "env": os.environ.get("POLLUTED"),
    "module": "xml.dom.minidom" in sys.modules, "cwd": os.getcwd(),
    "files": {d: sorted(n for n in os.listdir(d) if not n.startswith("cnncourse-"))  # not its sockets' folder
              for d in ("/tmp", "/dev/shm", os.path.expanduser("~"), ".")},
    "processes": len([p for p in os.listdir("/proc") if p.isdigit()]), "uid": os.getuid(),
    "caps": [status(n) for n in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")],
    "no_new_privs": status("NoNewPrivs"),
}))
'''

POLLUTE = r'''
import builtins, os, signal, subprocess, sys, xml.dom.minidom
import torch

POLLUTED = True
builtins.polluted = True
torch.add = lambda *args, **kwargs: 0
torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)
torch.manual_seed(5)
torch.set_grad_enabled(False)
os.environ["POLLUTED"] = "1"
for folder in ("/tmp", "/dev/shm", os.path.expanduser("~"), "."):
    open(os.path.join(folder, "polluted.txt"), "w").write("x")
subprocess.Popen(["/bin/sh", "-c", "sleep 2; touch /tmp/late.txt"], start_new_session=True)
stopped = []
for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
    if os.stat(f"/proc/{pid}").st_uid == os.getuid():
        continue  # its own processes (itself, the sleeper)
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        try:
            os.kill(pid, sig)
            stopped.append((pid, int(sig)))
        except OSError:
            pass
print("STOPPED", stopped)
'''

THREADS = r'''
import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(2)
x, w = torch.randn(8, 16, 64, 64, dtype=torch.float64), torch.randn(32, 16, 3, 3, dtype=torch.float64)
y = F.conv2d(x, w)
a = np.random.default_rng(0).random((600, 600))
print("FORK_OK", torch.get_num_threads(), bool(torch.allclose(y[:2], F.conv2d(x[:2], w))),
      float(abs(a @ a - np.einsum("ij,jk->ik", a, a)).max()) < 1e-9)
'''


@pytest.fixture(scope="module")
def warm():
    if why := sandbox_unavailable():
        pytest.skip(f"autograde's sandbox is unavailable here: {why}")
    if os.geteuid() != 0:
        pytest.skip("warm kernels are only used when grading as root (each kernel its own uid)")
    yield
    zygote.stop_zygote()


def run(code: str, folder, warm_kernels: bool = True) -> str:
    """Run one cell in a graded kernel (as autograde would, in ``folder``); its printed output."""
    config = Config()
    config.Sandbox.warm = warm_kernels
    nb = new_notebook(cells=[new_code_cell(code)])
    execute = SandboxedExecute(config=config, timeout=60, kernel_name="python3")
    nb, _ = execute.preprocess(nb, {"metadata": {"path": str(folder)}, "nbgrader": {"assignment": "zygote-test"}})
    return "".join(o.get("text", "") for o in nb.cells[0].outputs if o.output_type == "stream")


def state(output: str) -> dict:
    return json.loads(re.search(r"^STATE (\{.*\})$", output, re.M).group(1))


def test_no_state_crosses_kernels(warm, tmp_path):
    """The observer sees the same before and after the polluter; the polluter could stop no other process."""
    (tmp_path / "data.txt").write_text("the submission's own file\n")
    before = state(run(OBSERVE, tmp_path))
    assert os.getpid() in zygote._ZYGOTES  # served warm
    polluted = run(POLLUTE, tmp_path)
    assert re.search(r"^STOPPED \[\]$", polluted, re.M), polluted
    after = state(run(OBSERVE, tmp_path))
    assert after.pop("torch seed") != before.pop("torch seed")  # each kernel seeded afresh, as a new process is
    assert after == before
    assert before["files"]["."] == ["data.txt"] and before["files"]["/tmp"] == []
    assert (before["global"], before["builtins"], before["env"], before["module"]) == (False, False, None, False)
    assert (tmp_path / "data.txt").read_text() == "the submission's own file\n"  # the host's folder is untouched
    assert not (tmp_path / "polluted.txt").exists()


def test_warm_kernel_is_like_a_cold_one(warm, tmp_path):
    """torch's settings, the modules loaded and the files seen are those of a kernel started cold."""
    warm_state, cold_state = state(run(OBSERVE, tmp_path)), state(run(OBSERVE, tmp_path, warm_kernels=False))
    differs = {k for k in warm_state if warm_state[k] != cold_state[k]}
    assert differs <= {"processes", "uid", "torch seed"}, {k: (warm_state[k], cold_state[k]) for k in differs}
    assert warm_state["processes"] == cold_state["processes"] + 1  # bwrap's init, the zygote, the kernel


def test_kernel_has_no_privilege(warm, tmp_path):
    """The zygote is root in its sandbox; its kernels are not, and cannot become it."""
    seen = state(run(OBSERVE, tmp_path))
    assert seen["uid"] != 0
    assert seen["caps"] == ["0000000000000000"] * 5 and seen["no_new_privs"] == "1"


def test_thread_pools_work_after_fork(warm, tmp_path):
    """torch's intra-op pool and numpy's BLAS pool run (and give right answers) in a forked kernel."""
    assert re.search(r"^FORK_OK 2 True True$", run(THREADS, tmp_path), re.M)


def test_a_dead_zygote_is_replaced(warm, tmp_path):
    """A zygote that stopped answering (killed here from outside) is replaced before the next kernel."""
    run("print(1)", tmp_path)
    old = zygote._ZYGOTES[os.getpid()]
    os.killpg(old.process.pid, signal.SIGKILL)
    old.process.wait()
    assert "2" in run("print(2)", tmp_path)
    assert zygote._ZYGOTES[os.getpid()] is not old


FORK_CHECK = """
import os, threading, time
from cnncourse.autograde.zygote import fork_unsafe
import torch

baseline = len(os.listdir("/proc/self/task"))
print("idle:", fork_unsafe(baseline))
stop = threading.Event()
thread = threading.Thread(target=stop.wait)
thread.start()
print("thread:", fork_unsafe(baseline))
stop.set()
thread.join()  # returns before the kernel has removed the thread's task: wait for that
for _ in range(500):
    if len(os.listdir("/proc/self/task")) == baseline:
        break
    time.sleep(0.01)
torch.cuda.is_initialized = lambda: True
print("cuda:", fork_unsafe(baseline))
"""


def test_fork_unsafe_says_why():
    """The zygote refuses to fork once a thread runs (a thread pool started) or CUDA is initialised."""
    out = subprocess.run([sys.executable, "-c", FORK_CHECK], capture_output=True, text=True, timeout=120,
                         cwd=ROOT).stdout
    assert "idle: None" in out, out
    assert re.search(r"thread: \d+ threads run in the zygote \(after its imports: \d+\)", out), out
    assert "cuda: CUDA was initialised in the zygote" in out, out
