"""Warm kernels: a zygote in the sandbox, with torch and ipykernel imported, forks one fresh kernel per notebook.

A cold graded kernel spends most of its start-up importing torch (2-3 s of CPU). The zygote pays that once per
grader process: it starts in a :class:`~cnncourse.autograde.sandbox.Sandbox` like any kernel, imports
``c.Sandbox.warm_modules`` and waits. Per notebook it forks; the child drops to the kernel's uid, copies its
submission into its private home and becomes an ipykernel. No student code ever runs in the zygote, so every child
starts from the same untouched state: it shares no memory with an earlier kernel (each fork copies the zygote's),
and before the next fork the zygote kills every process the last kernel left and deletes whatever it wrote to the
sandbox's writable areas (``/tmp``, ``/dev/shm``, the home).

Why the zygote is safe to fork and hard to attack:

* it runs as root *inside* the sandbox (grading as root only), the kernels as another uid: they can neither signal
  nor trace it; as a non-root grader there is no second uid, so kernels start cold;
* it runs no thread of its own and never initialises CUDA or torch's thread pool (:func:`fork_unsafe` checks before
  every fork; numpy's OpenBLAS pool re-creates itself after a fork);
* it only accepts connections from outside the sandbox (a peer in another pid namespace), reads one word from
  them and never the request itself: the child reads that (the grading key included) after the fork.

The grader's side (:class:`Zygote`) starts one per worker process and asks it for kernels through a small client,
``python -I -S zygote.py connect SOCKET``, which jupyter_client starts as if it were the kernel: it exits with the
kernel's exit code, and killing it kills the kernel. This module imports only the standard library at the top,
so that the client starts in milliseconds.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time

__all__ = ["Zygote", "fork_unsafe", "stop_zygote", "warm_zygote"]

REQUEST_ENV = "CNNCOURSE_ZYGOTE_REQUEST"  # the client's environment: the request (JSON) for the kernel's child
HOME = "/home/student"
SUBMISSION = f"{HOME}/submission"
WRITABLE = (HOME, "/tmp", "/dev/shm")  # the sandbox's writable areas, emptied between kernels
_PR_SET_DUMPABLE, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT = 4, 24, 38, 47


# --- inside the sandbox: the zygote and its children -------------------------------------------------------------

def fork_unsafe(baseline_threads: int) -> str | None:
    """Why forking now would hand the child a broken runtime, or None: more native threads than after the imports
    (a thread pool started), or CUDA initialised (a CUDA context does not survive a fork)."""
    threads = len(os.listdir("/proc/self/task"))
    if threads > baseline_threads:
        return f"{threads} threads run in the zygote (after its imports: {baseline_threads})"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "CUDA was initialised in the zygote"
    return None


def _prctl(*args: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(*[ctypes.c_ulong(a) for a in args]) != 0:
        raise OSError(ctypes.get_errno(), f"prctl{args} failed")


def _clean(baseline: dict[str, set[str]]) -> None:
    """Kill every process of the sandbox but the zygote (and bwrap's init), then delete what they wrote."""
    import shutil

    for _ in range(200):
        try:
            os.kill(-1, signal.SIGKILL)  # root in the sandbox's pid namespace: every process but init and us
        except ProcessLookupError:
            break
        while True:  # reap our children
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        time.sleep(0.005)
    else:  # something survives SIGKILL for a second: no clean state to fork from, the grader starts a new sandbox
        print("cnncourse zygote: stopping, processes of the last kernel would not die", file=sys.stderr, flush=True)
        os._exit(4)
    for folder, kept in baseline.items():
        for entry in os.scandir(folder):
            if entry.name in kept:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)


def _child(conn: socket.socket, uid: int, limits: dict[str, int]) -> None:
    """In the forked child: read the request, drop to ``uid``, copy the submission, run the kernel; never returns."""
    code = 1
    try:
        os.setsid()
        with conn, conn.makefile("r") as stream:
            request = json.loads(stream.readline())
        os.environ.update(request["env"])  # the grading key and hidden inputs of this notebook only
        _drop_privileges(uid, limits)
        import shutil

        shutil.copytree(request["submission"], SUBMISSION, symlinks=True)
        os.chdir(SUBMISSION)
        if "numpy.random" in sys.modules:  # a fresh process seeds numpy's and torch's generators from the OS
            sys.modules["numpy.random"].seed()
        if "torch" in sys.modules:
            sys.modules["torch"].seed()
        sys.argv = ["ipykernel_launcher", *request["argv"]]
        sys.path[:] = [p for p in sys.path if p not in ("", HOME)]  # as ipykernel_launcher does
        from ipykernel import kernelapp

        kernelapp.launch_new_instance(argv=request["argv"])
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 0
    except BaseException as err:  # noqa: BLE001 - reported, and the child must never return into the zygote's loop
        print(f"cnncourse zygote: the kernel could not start: {err!r}", file=sys.stderr, flush=True)
    finally:
        os._exit(code)


def _drop_privileges(uid: int, limits: dict[str, int]) -> None:
    """Become ``uid`` with no capability, no way to regain one, and the sandbox's rlimits (setpriv + prlimit)."""
    import resource

    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        _prctl(_PR_CAPBSET_DROP, cap)
    _prctl(_PR_CAP_AMBIENT, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # from root to another uid: permitted and effective capabilities are cleared
    _prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, f"RLIMIT_{name.upper()}"), (value, value))


def serve(path: str, uid: int, limits: dict[str, int], modules: list[str]) -> None:
    """The zygote's loop (as root in the sandbox): import ``modules``, listen on ``path``, fork a kernel per request."""
    import importlib

    for name in modules:
        importlib.import_module(name)
    _prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)  # no ptrace, no /proc/<pid>/mem of the zygote
    threads = len(os.listdir("/proc/self/task"))
    baseline = {folder: set(os.listdir(folder)) for folder in WRITABLE}
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(8)
    while True:
        conn, _ = listener.accept()
        pid = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)[:4]
        word = _read_word(conn)
        if int.from_bytes(pid, sys.byteorder) != 0 or word not in ("ping", "kernel"):  # a peer inside the sandbox
            conn.close()
            continue
        if word == "ping":
            conn.sendall(b"pong\n")
            conn.close()
            continue
        if why := fork_unsafe(threads):
            print(f"cnncourse zygote: stopping, it cannot fork safely: {why}", file=sys.stderr, flush=True)
            sys.exit(3)
        child = os.fork()
        if child == 0:
            listener.close()
            _child(conn, uid, limits)
        code = _wait(child, conn)
        _clean(baseline)
        try:
            conn.sendall(f"exit {code}\n".encode())
        except OSError:
            pass
        conn.close()


def _read_word(conn: socket.socket) -> str:
    """The first line's word, read byte by byte (what follows is the child's to read), within 5 seconds."""
    conn.settimeout(5)
    data = b""
    try:
        while len(data) < 16 and not data.endswith(b"\n"):
            byte = conn.recv(1)
            if not byte:
                break
            data += byte
    except OSError:
        return ""
    conn.settimeout(None)
    return data.decode(errors="replace").strip()


def _wait(child: int, conn: socket.socket) -> int:
    """Wait for the kernel to exit, or for its client to go (then kill it); its exit code."""
    pidfd = os.pidfd_open(child)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(conn, select.POLLRDHUP | select.POLLHUP)
    try:
        while True:
            ready = dict(poller.poll())
            if pidfd in ready:
                break
            if conn.fileno() in ready:  # the grader stopped the kernel (or died): kill it now
                os.kill(child, signal.SIGKILL)
                poller.unregister(conn)
    finally:
        os.close(pidfd)
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status)


# --- the client: started by jupyter_client as the kernel's process -----------------------------------------------

def connect(path: str) -> int:
    """Ask the zygote at ``path`` for a kernel (the request is in ``$CNNCOURSE_ZYGOTE_REQUEST``); its exit code."""
    request = os.environ.pop(REQUEST_ENV)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(143))  # closing the connection kills the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts go to the kernel as messages
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)
        conn.sendall(b"kernel\n" + request.encode() + b"\n")
        with conn.makefile("r") as stream:
            for line in stream:
                if line.startswith("exit "):
                    return int(line.split()[1]) & 0xFF
    return 1


# --- the grader's side -------------------------------------------------------------------------------------------

class Zygote:
    """A zygote process in its own sandbox (holding a sandbox slot, i.e. a uid for its kernels) and its folder.

    ``folder`` (bound into the sandbox at the same path) holds the socket (``control/``, root only) and one
    folder per kernel (:meth:`kernel_dir`): its connection file and sockets, a copy of its submission and its
    hidden inputs.
    """

    def __init__(self, sandbox, env: dict[str, str], start_timeout: float = 120) -> None:
        import subprocess
        import tempfile

        from cnncourse.autograde.sandbox import Slot

        self.key = warm_key(sandbox, env)
        self.slot = Slot(sandbox.slots)
        self.uid = sandbox.uid + self.slot.number
        self.folder = tempfile.mkdtemp(prefix="cnncourse-zygote-")
        os.chmod(self.folder, 0o755)
        os.mkdir(os.path.join(self.folder, "control"), 0o700)
        self.socket = os.path.join(self.folder, "control", "zygote.sock")
        mib = 2**20
        limits = {"as": sandbox.memory_mb * mib, "cpu": sandbox.cpu_seconds, "nproc": sandbox.processes,
                  "nofile": sandbox.open_files, "fsize": sandbox.file_size_mb * mib, "core": 0}
        serve_cmd = [sys.executable, "-m", "cnncourse.autograde.zygote", "serve", self.socket, str(self.uid),
                     json.dumps(limits), json.dumps(list(sandbox.warm_modules))]
        cmd = sandbox.command(serve_cmd, None, self.folder, self.slot.number, None, env, as_root=True)
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + start_timeout
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the warm-kernel zygote did not start (its errors are in the log above); "
                                   "set c.Sandbox.warm = False to start every kernel cold")
            time.sleep(0.05)

    def ping(self, timeout: float = 5) -> bool:
        """Whether the zygote answers now (it may have been stopped or killed)."""
        if self.process.poll() is not None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(timeout)
                conn.connect(self.socket)
                conn.sendall(b"ping\n")
                return conn.recv(5) == b"pong\n"
        except OSError:
            return False

    def kernel_dir(self) -> str:
        """A new folder for one kernel (its connection file and ipc sockets), owned by the kernels' uid."""
        import tempfile

        folder = tempfile.mkdtemp(prefix="kernel-", dir=self.folder)
        os.chown(folder, self.uid, self.uid)
        return folder

    def kernel_command(self) -> list[str]:
        """The command jupyter_client runs as the kernel: the client, in the grader's space (stdlib only)."""
        return [sys.executable, "-I", "-S", os.path.abspath(__file__), "connect", self.socket]

    def request(self, run_dir: str, argv: list[str], cwd: str, hidden: str | None, env: dict[str, str]) -> str:
        """The request for one kernel, as JSON: copies of its submission (``cwd``) and hidden inputs in ``run_dir``."""
        import shutil

        submission = os.path.join(run_dir, "submission")
        shutil.copytree(cwd, submission, symlinks=True)
        extra = {}
        if hidden:
            from cnncourse.autograde.hidden import HIDDEN_INPUTS_ENV

            shutil.copytree(hidden, os.path.join(run_dir, "hidden"))
            extra[HIDDEN_INPUTS_ENV] = os.path.join(run_dir, "hidden")
        for root, dirs, files in os.walk(submission):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.lchown(name, self.uid, self.uid)
        return json.dumps({"argv": argv, "submission": submission, "env": {**env, **extra}})

    def stop(self) -> None:
        import shutil

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
        self.slot.release()


def warm_key(sandbox, env: dict[str, str]) -> str:
    """What a zygote's kernels share: the sandbox's settings and the environment it passes."""
    settings = {name: getattr(sandbox, name) for name in sandbox.trait_names(config=True)}
    passed = sorted((k, v) for k, v in env.items() if k in sandbox.env_allow or k in sandbox.data_env)
    return json.dumps([settings, passed], sort_keys=True, default=str)


_ZYGOTES: dict[int, Zygote] = {}  # per grader process (a fork of the grader gets its own)


def warm_zygote(sandbox, env: dict[str, str]) -> Zygote:
    """This process's zygote for ``sandbox`` and ``env``, started (or restarted, if it stopped answering) on demand."""
    import atexit

    zygote = _ZYGOTES.get(os.getpid())
    if zygote is not None and (zygote.key != warm_key(sandbox, env) or not zygote.ping()):
        zygote.stop()
        zygote = None
    if zygote is None:
        if not _ZYGOTES:
            atexit.register(stop_zygote)
        zygote = _ZYGOTES[os.getpid()] = Zygote(sandbox, env)
    return zygote


def stop_zygote() -> None:
    """Stop this process's zygote, if it has one (at exit, and when a test wants a fresh one)."""
    zygote = _ZYGOTES.pop(os.getpid(), None)
    if zygote is not None:
        zygote.stop()


if __name__ == "__main__":
    if sys.argv[1] == "connect":
        sys.exit(connect(sys.argv[2]))
    serve(sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]), json.loads(sys.argv[5]))
