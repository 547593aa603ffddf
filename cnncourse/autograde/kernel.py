"""The graded kernel: nbgrader's ``Execute`` with every kernel in a :class:`~cnncourse.autograde.sandbox.Sandbox`.

``SandboxedExecute`` replaces ``nbgrader.preprocessors.Execute`` in ``nbgrader_config.py``, so ``nbgrader
autograde`` and ``make autograde`` (which runs nbgrader's API in worker processes) grade alike. Per notebook it

1. checks that kernels can be sandboxed here (or refuses, saying how to install bubblewrap);
2. starts the kernel loading the assignment's toolkit entries (``c.CnnCourseAutograde.toolkits``) before any cell,
   and lets the assignment's hidden scorer (``c.SandboxedExecute.hidden_scorers``) write its hidden inputs, without
   labels, into a folder the kernel reads (:mod:`cnncourse.autograde.hidden`);
3. runs the notebook in a sandboxed kernel, killed after ``c.Sandbox.notebook_timeout`` seconds (or when a cell
   past ``c.Execute.timeout`` ignores the interrupt); the cells that finished keep their scores;
4. has the scorer score what the kernel predicted, here, in the grader's process.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError
from nbgrader.preprocessors import Execute
from traitlets import Dict, Unicode, default

from cnncourse.autograde.hidden import HIDDEN_INPUTS_ENV, RESULTS, fail, load_scorer, write_results
from cnncourse.autograde.sandbox import Sandbox, Slot
from cnncourse.autograde.settings import CnnCourseAutograde, kernel_arguments
from cnncourse.autograde.zygote import REQUEST_ENV, warm_zygote
from cnncourse.marker import GRADING_KEY_ENV

__all__ = ["SandboxedExecute", "SandboxedKernelManager"]

_NEVER_PASSED = ("CNNCOURSE_GRADING_DATA",)  # hidden data the grader reads: never in a kernel's environment


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel on the ipc transport, started inside the sandbox (``mode = "none"``: started as usual, with the
    hidden-data variables removed from its environment); forked by this process's warm-kernel zygote when
    ``c.Sandbox.warm`` and grading as root (:mod:`cnncourse.autograde.zygote`)."""

    hidden_dir: str | None = None
    grading_key: str | None = None  # this notebook's key (StartGrading), for this kernel's environment only

    async def _async_pre_start_kernel(self, **kw):
        self.sandbox = Sandbox(parent=self)
        self.slot = self.zygote = None
        self.run_dir = None
        if self.sandbox.mode == "bwrap" and self._can_be_warm():
            self.zygote = warm_zygote(self.sandbox, _without_hidden(kw.get("env") or os.environ))
            self.run_dir = self.zygote.kernel_dir()
        elif self.sandbox.mode == "bwrap":
            self.slot = Slot(self.sandbox.slots)
            self.run_dir = tempfile.mkdtemp(prefix="cnncourse-kernel-")
        if self.run_dir:
            self.transport = "ipc"
            self.ip = os.path.join(self.run_dir, "zmq")
            self.connection_file = os.path.join(self.run_dir, "kernel.json")
            self.kernel_spec.interrupt_mode = "message"  # its process group is in another session and namespace
        return await super()._async_pre_start_kernel(**kw)

    def _can_be_warm(self) -> bool:
        """Warm kernels are on, we grade as root, and the kernel is this Python's ipykernel (what the zygote forks)."""
        argv = self.kernel_spec.argv
        python = argv[0] in ("python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])) or (
            os.path.realpath(shutil.which(argv[0]) or argv[0]) == os.path.realpath(sys.executable))  # as jupyter_client
        return self.sandbox.warm and os.geteuid() == 0 and argv[1:3] == ["-m", "ipykernel_launcher"] and python

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if self.zygote:  # the kernel's process is the zygote's client; the kernel is a fork of the zygote
            os.chmod(self.connection_file, 0o644)
            own = {GRADING_KEY_ENV: self.grading_key} if self.grading_key else {}
            request = self.zygote.request(self.run_dir, kernel_cmd[3:], kw.get("cwd") or os.getcwd(),
                                          self.hidden_dir, own)
            kw["env"] = {REQUEST_ENV: request}
            await super()._async_launch_kernel(self.zygote.kernel_command(), **kw)
            return
        env = _without_hidden(kw.get("env") or os.environ)
        if self.grading_key:
            env[GRADING_KEY_ENV] = self.grading_key
        if self.sandbox.mode == "bwrap":
            self.uid = self.sandbox.uid + self.slot.number if os.geteuid() == 0 else os.geteuid()
            os.chown(self.run_dir, self.uid, self.uid)
            os.chmod(self.connection_file, 0o644)
            kernel_cmd = self.sandbox.command(kernel_cmd, kw.get("cwd") or os.getcwd(), self.run_dir,
                                              self.slot.number, self.hidden_dir, env)
        elif self.hidden_dir:
            env[HIDDEN_INPUTS_ENV] = self.hidden_dir
        kw["env"] = env
        await super()._async_launch_kernel(kernel_cmd, **kw)

    def seal(self) -> None:
        """After the kernel made its sockets: its run folder becomes read-only to it (nothing more to write)."""
        if self.run_dir and os.geteuid() == 0:
            os.chown(self.run_dir, 0, 0)
            os.chmod(self.run_dir, 0o755)

    def kill_now(self) -> None:
        """Kill the sandbox (every process in it) from another thread: the notebook's time is up."""
        process = getattr(self.provisioner, "process", None)
        if process is not None and process.poll() is None:
            process.kill()  # warm: the zygote's client; the zygote then kills the kernel and all it started

    async def cleanup_resources(self, restart: bool = False) -> None:
        await super().cleanup_resources(restart=restart)
        if self.run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None
        if self.slot is not None:
            self.slot.release()
            self.slot = None


def _without_hidden(env) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in _NEVER_PASSED}


class SandboxedExecute(Execute):
    """nbgrader's Execute, each kernel sandboxed, with a per-notebook wall-clock limit and hidden scoring."""

    hidden_scorers = Dict(key_trait=Unicode(), value_trait=Unicode(), help=(
        "Assignment id -> 'module:Class' of its hidden scorer (cnncourse.autograde.hidden.HiddenScorer): it "
        "writes the hidden inputs the kernel sees (no labels) and scores the kernel's predictions here.")
                          ).tag(config=True)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)

    @default("shutdown_kernel")
    def _kill_at_the_end(self):
        return "immediate"  # nothing of a graded kernel is kept: no need to wait (about 1 s) for a clean exit

    def preprocess(self, nb, resources):
        sandbox = Sandbox(parent=self)
        sandbox.check()
        info = resources.get("nbgrader", {})
        assignment = info.get("assignment", "")
        settings = CnnCourseAutograde(parent=self)
        settings.check_env(assignment)
        self._toolkits = settings.toolkits.get(assignment, [])  # loaded by the kernel at start (below)
        scorer = load_scorer(self.hidden_scorers.get(assignment))
        folder = resources.get("metadata", {}).get("path") or os.getcwd()
        hidden = tempfile.mkdtemp(prefix="cnncourse-hidden-") if scorer else None
        self._hidden, self._timed_out, self._finished = hidden, False, set()
        try:
            if scorer:  # a results file submitted with the notebook never reaches the leaderboard
                (Path(folder) / RESULTS).unlink(missing_ok=True)
            key = scorer.prepare(Path(hidden)) if scorer else None
            if hidden:
                os.chmod(hidden, 0o755)
                for path in Path(hidden).iterdir():
                    os.chmod(path, 0o644)
            timer = threading.Timer(sandbox.notebook_timeout, self._time_up)
            timer.daemon = True
            timer.start()
            stopped = None
            try:
                nb, resources = super().preprocess(nb, resources)
            except CellTimeoutError:  # a cell ran past c.Execute.timeout and ignored the interrupt: kernel stopped
                stopped = "a cell ran past its time limit (c.Execute.timeout) and did not stop when interrupted"
            except Exception:
                if not self._timed_out:
                    raise
            finally:
                timer.cancel()
            if self._timed_out:
                stopped = f"the notebook's time limit ({sandbox.notebook_timeout} s) was reached"
            if stopped:  # the cells that finished keep their scores; the others score 0
                self._fail_unfinished(nb, stopped)
            if scorer:
                write_results(Path(folder), scorer.score(nb, key))
        finally:
            if hidden:
                shutil.rmtree(hidden, ignore_errors=True)
        return nb, resources

    def create_kernel_manager(self):
        # Here, just before the kernel starts: nbconvert's preprocess resets the configured traits (extra_arguments).
        self.extra_arguments = kernel_arguments(self.extra_arguments, self._toolkits)
        km = super().create_kernel_manager()
        km.hidden_dir = self._hidden
        km.grading_key = self.resources.get("cnncourse", {}).get("key")
        return km

    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        self.km.seal()
        return kc

    # nbclient binds its sync wrapper to its own coroutine: rebind it, or the override above never runs
    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    def on_cell_executed(self, **kwargs):
        super().on_cell_executed(**kwargs)
        self._finished.add(id(kwargs["cell"]))

    def _fail_unfinished(self, nb, why: str) -> None:
        """Each code cell that did not finish (the kernel was stopped) gets an error: it scores 0, unflagged."""
        for cell in nb.cells:
            if cell.cell_type == "code" and id(cell) not in self._finished:
                fail(cell, f"not run to the end: {why}, and its kernel was stopped")

    def _time_up(self) -> None:
        self._timed_out = True
        self.log.warning("notebook time limit (c.Sandbox.notebook_timeout) reached: its kernel is killed")
        km = getattr(self, "km", None)
        if km is not None:
            km.kill_now()
