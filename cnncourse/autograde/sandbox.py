"""Each autograded kernel runs in a bubblewrap sandbox: ``c.Sandbox`` in ``nbgrader_config.py``.

What the kernel sees (everything else of the machine is absent, not merely unreadable):

* read-only: the system (``/usr``, ``/etc``), the Python it runs (base install and venv), the course package
  (``cnncourse/`` alone, not the checkout around it), the paths in ``read_only`` (e.g. public training data);
* a private ``/tmp``, ``/dev/shm`` and home, each a size-limited tmpfs, and a writable copy of its own
  submission folder (also on a tmpfs): nothing it writes survives it;
* the hidden inputs the grader hands it (``$CNNCOURSE_HIDDEN_INPUTS``, read-only, no labels);
* the folder of its ZeroMQ sockets (ipc transport: its network namespace has no route to the host).

It runs as an unprivileged uid (when grading as root: ``uid`` + a free slot, one uid per concurrent kernel, so
that one kernel's process limit never starves another), with its own network, process, IPC and UTS
namespaces, an environment cleared to ``env_allow``, and rlimits on memory, CPU time, processes, open files and
file size. ``Sandbox.check()`` says how to install bubblewrap, or how to accept the risk (``mode = "none"``).
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from traitlets import Bool, Enum, Int, List, Unicode
from traitlets.config import Configurable

from cnncourse.autograde.hidden import HIDDEN_INPUTS_ENV

__all__ = ["Sandbox", "SandboxUnavailable", "Slot", "SUBMISSION_DIR"]

SUBMISSION_DIR = "/home/student/submission"  # the kernel's working directory: a writable copy of the submission
_HIDDEN_DIR = "/srv/hidden"
_SOURCE_DIR = "/srv/submitted"
_INSTALL = ("install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; Fedora: `dnf install bubblewrap`) "
            "on a Linux machine with user namespaces, or accept that student code runs with your rights: "
            'c.Sandbox.mode = "none" in nbgrader_config.py')


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here; the message says what to do."""


class Sandbox(Configurable):
    """Where and how a graded kernel runs; configured as ``c.Sandbox.<name>`` in ``nbgrader_config.py``."""

    mode = Enum(["bwrap", "none"], "bwrap", help=(
        "'bwrap': every graded kernel runs in a bubblewrap sandbox (Linux). 'none': kernels run with the "
        "grader's rights and see the whole machine (solutions, gradebook, other students): accept that risk "
        "only for trusted notebooks.")).tag(config=True)
    uid = Int(200_000, help=(
        "When grading as root: the first uid the kernels run as (uid + slot, one per concurrent kernel; no "
        "account needed). As another user the kernel keeps that user's uid, in its own user namespace.")
              ).tag(config=True)
    slots = Int(64, help="How many kernels may run at once (uids uid .. uid + slots - 1).").tag(config=True)
    memory_mb = Int(16_384, help=(
        "Address space per kernel process in MiB (RLIMIT_AS; torch maps about 3 GiB at import, so this is "
        "virtual memory, not RAM).")).tag(config=True)
    cpu_seconds = Int(3600, help="CPU seconds per kernel process, all threads together (RLIMIT_CPU).").tag(config=True)
    processes = Int(512, help="Processes and threads of the kernel's uid (RLIMIT_NPROC).").tag(config=True)
    open_files = Int(1024, help="Open files per process (RLIMIT_NOFILE).").tag(config=True)
    file_size_mb = Int(256, help="Largest file a kernel may write, MiB (RLIMIT_FSIZE).").tag(config=True)
    tmpfs_mb = Int(1024, help="Size of each writable area (home with the submission copy, /tmp, /dev/shm), MiB."
                   ).tag(config=True)
    notebook_timeout = Int(1800, help=(
        "Wall-clock seconds for a whole notebook; then its sandbox is killed (the per-cell limit is "
        "c.Execute.timeout).")).tag(config=True)
    read_only = List(Unicode(), help=(
        "More host paths the kernel may read (at the same path), e.g. public training data. Never the "
        "solutions, the gradebook or hidden data.")).tag(config=True)
    data_env = List(Unicode(), ["CNNCOURSE_DATA_PATH"], help=(
        "Environment variables naming public data folders: passed on and mounted read-only when set.")
                    ).tag(config=True)
    env_allow = List(Unicode(), [
        "CNNCOURSE_QUICK", "CNNCOURSE_GRADING_KEY", "NBGRADER_EXECUTION", "NBGRADER_VALIDATING", "MPLBACKEND",
        "OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "LANG", "LC_ALL", "TZ",
        "LD_LIBRARY_PATH",  # the hub's copied Python finds its own libpython through it (cnncourse.hub.userenv)
    ], help="Environment variables passed to the kernel (all others are cleared).").tag(config=True)

    warm = Bool(True, help=(
        "Start kernels warm: a zygote in the sandbox imports warm_modules once and forks a fresh kernel per "
        "notebook (cnncourse.autograde.zygote); only when grading as root (each kernel runs as its own uid, the "
        "zygote as root inside the sandbox). False, or grading as another user: every kernel starts cold.")
                ).tag(config=True)
    warm_modules = List(Unicode(), [
        "torch", "torch.nn.functional", "numpy", "zmq", "IPython", "ipykernel.kernelapp", "ipykernel.ipkernel",
    ], help=("What the zygote imports before it forks kernels: third-party modules only (never "
             "cnncourse.grading, whose import-time snapshot each kernel takes itself), starting no thread pool.")
                        ).tag(config=True)

    def check(self) -> None:
        """Raise :class:`SandboxUnavailable` (with what to do) unless kernels can be sandboxed here."""
        if self.mode == "none":
            return
        _probe(shutil.which("bwrap") or "", os.geteuid() == 0)
        unreadable = [p for p in _python_paths() if not _readable_by_others(p)]
        if os.geteuid() == 0 and unreadable:
            raise SandboxUnavailable(
                f"the sandboxed kernel (uid {self.uid}+) could not read {', '.join(map(str, unreadable))}: make "
                "them readable by all users (chmod -R o+rX PATH; only the folders themselves are mounted, so "
                "their parents may stay private), or set c.Sandbox.mode = \"none\" to grade unsandboxed")

    def command(self, kernel_cmd: list[str], cwd: str | None, run_dir: str, slot: int,
                hidden: str | None = None, env: dict[str, str] | None = None, *, as_root: bool = False) -> list[str]:
        """The command that runs ``kernel_cmd`` in the sandbox, in a writable copy of ``cwd``.

        ``run_dir`` (host folder, same path inside) holds the connection file and the ipc sockets; ``hidden``
        a folder of hidden inputs mounted read-only; ``env`` the grader's environment (filtered here).
        ``cwd=None``, ``as_root=True``: the warm-kernel zygote, which copies each submission and drops to the
        slot's uid and limits itself, per kernel (:mod:`cnncourse.autograde.zygote`).
        """
        env = dict(os.environ if env is None else env)
        root = os.geteuid() == 0
        size = str(self.tmpfs_mb * 2**20)
        cmd = ["bwrap", "--die-with-parent", "--new-session"]
        cmd += (["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
                if root else ["--unshare-all"])
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            path = Path("/") / name
            if path.is_symlink():
                cmd += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                cmd += ["--ro-bind", str(path), str(path)]
        mounts = ["/usr", "/etc", *_python_paths()]
        data = {name: [p for p in env[name].split(os.pathsep) if p] for name in self.data_env if env.get(name)}
        own = _data_dir(env)  # the grader's downloaded public data (cnncourse.data.data_dir()), searched read-only
        if own and "CNNCOURSE_DATA_PATH" in self.data_env:
            data.setdefault("CNNCOURSE_DATA_PATH", []).append(own)
        mounts += [p for p in [*self.read_only, *(p for ps in data.values() for p in ps)] if os.path.exists(p)]
        _refuse_hidden_inside(env, mounts)
        # The private areas first: a read-only folder under /tmp (the hub's copied Python) is bound over them.
        cmd += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", size, "--tmpfs", "/dev/shm",
                "--perms", "1777", "--size", size, "--tmpfs", "/tmp",
                *_parents("/home/student"), "--perms", "1777", "--size", size, "--tmpfs", "/home/student"]
        for path in dict.fromkeys(str(p) for p in mounts):
            cmd += _parents(path) + ["--ro-bind", path, path]
        if cwd is not None:
            cmd += [*_parents(_SOURCE_DIR), "--ro-bind", cwd, _SOURCE_DIR]
        cmd += [*_parents(run_dir), "--bind", run_dir, run_dir]
        if hidden:
            cmd += [*_parents(_HIDDEN_DIR), "--ro-bind", hidden, _HIDDEN_DIR]
        cmd += ["--clearenv", "--unsetenv", "JPY_PARENT_PID"]
        allowed = {name: env[name] for name in self.env_allow if name in env}
        allowed.update({name: os.pathsep.join(paths) for name, paths in data.items()})
        allowed.update(PATH=os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
                       HOME="/home/student", TMPDIR="/tmp", USER="student", LOGNAME="student",
                       PYTHONPATH=str(_package_dir().parent), LANG=allowed.get("LANG", "C.UTF-8"))
        if hidden:
            allowed[HIDDEN_INPUTS_ENV] = _HIDDEN_DIR
        for name, value in sorted(allowed.items()):
            cmd += ["--setenv", name, value]
        cmd += ["--chdir", "/home/student", "--"]
        if cwd is None:
            if not (as_root and root):
                raise SandboxUnavailable("only a grader running as root can run the warm-kernel zygote (cwd=None)")
            return [*cmd, "/bin/sh", "-c", 'exec "$@" >/dev/null', "sandbox", *kernel_cmd]
        # The copy is made before the uid is dropped (the submitted folder need not be readable by that uid).
        copy = f"mkdir {SUBMISSION_DIR} && cp -R {_SOURCE_DIR}/. {SUBMISSION_DIR}/"
        drop = []
        if root:
            uid = str(self.uid + slot)
            copy += f" && chown -R {uid}:{uid} {SUBMISSION_DIR}"
            drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                    "--bounding-set=-all", "--no-new-privs"]
        mib = 2**20
        limits = ["prlimit", f"--as={self.memory_mb * mib}", f"--cpu={self.cpu_seconds}",
                  f"--nproc={self.processes}", f"--nofile={self.open_files}", f"--fsize={self.file_size_mb * mib}",
                  "--core=0", "--"]
        script = f'{copy} && cd {SUBMISSION_DIR} && exec "$@" >/dev/null'  # stdout: ipykernel's notes; stderr kept'
        return [*cmd, "/bin/sh", "-c", script, "sandbox", *drop, *limits, *kernel_cmd]


def _parents(path: str) -> list[str]:
    """``--dir`` for each parent of ``path`` (mode 755), so that a private parent on the host (``/root``) does not
    hide a readable folder bound below it."""
    out = []
    for parent in reversed(Path(path).parents[:-1]):
        out += ["--perms", "0755", "--dir", str(parent)]
    return out


def _data_dir(env: dict[str, str]) -> str | None:
    """``cnncourse.data.data_dir()`` of the grader when it exists (public data downloaded there), else None."""
    folder = Path(env.get("CNNCOURSE_DATA_DIR") or Path.home() / ".cache" / "cnncourse").expanduser()
    return str(folder) if folder.is_dir() else None


def _refuse_hidden_inside(env: dict[str, str], mounts: list) -> None:
    """Hidden data (``$CNNCOURSE_GRADING_DATA``) inside a folder the kernel can read: refuse, naming both."""
    hidden = env.get("CNNCOURSE_GRADING_DATA")
    if not hidden:
        return
    path = Path(hidden).resolve()
    for mount in mounts:
        if path.is_relative_to(Path(mount).resolve()):
            raise SandboxUnavailable(f"the hidden grading data {hidden} is inside {mount}, which graded kernels can "
                                     "read: move it outside (e.g. /secure/...) and set $CNNCOURSE_GRADING_DATA there")


def _package_dir() -> Path:
    import cnncourse

    return Path(cnncourse.__file__).resolve().parent


def _python_paths() -> list[Path]:
    """What the kernel's Python needs: its base install, the venv, every other package folder on ``sys.path``
    (the hub's users run a copy of the base Python whose ``.pth`` adds the venv's), the course package (the
    checkout's other folders, e.g. ``solutions/``, are not mounted)."""
    paths = [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), _package_dir()]
    real = Path(sys.executable).resolve()
    paths.append(real.parent)
    paths += [Path(p).resolve() for p in sys.path if Path(p).name in ("site-packages", "dist-packages")
              and Path(p).is_dir()]
    inside = [p for p in dict.fromkeys(paths) if not any(p != q and p.is_relative_to(q) for q in paths)]
    return inside


def _readable_by_others(path: Path) -> bool:
    mode = path.stat().st_mode
    return bool(mode & 0o004) and bool(mode & 0o001)


@functools.cache
def _probe(bwrap: str, root: bool) -> None:
    """Run ``true`` in a minimal sandbox once per process; raise with what to do if that fails."""
    if not bwrap:
        raise SandboxUnavailable(f"autograde runs each kernel in a sandbox, but `bwrap` was not found: {_INSTALL}.")
    flags = (["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"] if root else ["--unshare-all"])
    cmd = [bwrap, *flags, "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
           "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev", "--", "/usr/bin/true"]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SandboxUnavailable(f"bwrap could not start ({err}): {_INSTALL}.") from None
    if run.returncode != 0:
        raise SandboxUnavailable(f"bwrap cannot create namespaces here ({run.stderr.strip()[:300]}); enable user "
                                 f"namespaces (sysctl kernel.unprivileged_userns_clone=1) or {_INSTALL}.")


class Slot:
    """A free sandbox slot (0 .. slots - 1) held until :meth:`release`: one uid per concurrent kernel."""

    def __init__(self, slots: int) -> None:
        folder = Path(tempfile.gettempdir()) / f"cnncourse-sandbox-slots-{os.getuid()}"
        folder.mkdir(mode=0o700, exist_ok=True)
        for k in range(slots):
            fd = os.open(folder / f"{k}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.number, self._fd = k, fd
            return
        raise SandboxUnavailable(f"all {slots} sandbox slots are in use: raise c.Sandbox.slots")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
