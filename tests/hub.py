"""Run the course's JupyterHub for the tests: real Unix users (unique prefix), loopback, everything removed after.

``running_hub(prefix, people)`` is a context manager yielding a :class:`Hub`: the state folder (course, exchange,
homes) is a fresh world-readable folder under /tmp, the accounts are made by ``python -m cnncourse.hub roster``
and the hub is ``jupyterhub -f hub/jupyterhub_config.py``. On exit: the hub stops, every process of the test's
accounts is killed, the accounts, their homes and the state folder are removed.

A :class:`Hub` talks to the hub REST API, to each user's server and to the formgrader service through the
proxy, with each user's own token (requested with their password), and runs shell commands in a Jupyter
terminal of a server (``terminal``), as a person at that server would.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cnncourse.hub.settings import PROJECT, HubSettings
from tests.lab import free_port, stop_process

PROXY = PROJECT / "node_modules" / ".bin" / "configurable-http-proxy"


@dataclass
class Response:
    status: int
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Hub:
    base: str
    settings: HubSettings
    env: dict[str, str]
    log: Path
    passwords: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, user: str | None = None, body=None, form: dict | None = None,
                timeout: float = 60) -> Response:
        """``method base/path`` as ``user`` (their token); ``body`` goes as JSON, ``form`` as a form."""
        headers = {"Authorization": f"token {self.tokens[user]}"} if user else {}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Response(r.status, r.read())
        except urllib.error.HTTPError as err:
            return Response(err.code, err.read())
        except urllib.error.URLError as err:  # nothing listening (yet)
            return Response(0, str(err).encode())

    def login(self, user: str) -> str:
        """The user's API token, requested from the hub with their Unix password (PAM)."""
        r = self.request("POST", f"/hub/api/users/{user}/tokens",
                         body={"auth": {"username": user, "password": self.passwords[user]}, "expires_in": 3600,
                               "note": "tests/test_hub.py"})
        assert r.status == 201, f"token for {user}: {r.status} {r.body[:300]!r}"
        self.tokens[user] = r.json()["token"]
        return self.tokens[user]

    def start_servers(self, *users: str, timeout: float = 120) -> dict[str, str]:
        """Spawn the users' servers (each as its user; a running one is kept) and wait until each answers through
        the proxy; their URL prefixes."""
        for user in users:
            r = self.request("POST", f"/hub/api/users/{user}/server", user)
            assert r.status in (201, 202) or b"already running" in r.body, f"spawn {user}: {r.status} {r.body[:300]!r}"
        prefixes, deadline = {}, time.monotonic() + timeout
        for user in users:
            while user not in prefixes:
                assert time.monotonic() < deadline, f"{user}'s server did not start:\n{self.log.read_text()[-4000:]}"
                server = self.request("GET", f"/hub/api/users/{user}", user).json().get("servers", {}).get("", {})
                if server.get("ready") and self.request("GET", f"{server['url']}api/status", user).status == 200:
                    prefixes[user] = server["url"].rstrip("/")
                else:
                    time.sleep(0.5)
        return prefixes

    def terminal(self, prefix: str, user: str, command: str, timeout: float = 180) -> tuple[int, str]:
        """Run ``command`` in a new terminal of the server at ``prefix`` as ``user``; (exit status, output)."""
        return asyncio.run(_terminal(self, prefix, user, command, timeout))


async def _terminal(hub: Hub, prefix: str, user: str, command: str, timeout: float) -> tuple[int, str]:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    r = hub.request("POST", f"{prefix}/api/terminals", user, body={})
    assert r.status == 200, f"new terminal at {prefix}: {r.status} {r.body[:300]!r}"
    name = r.json()["name"]
    url = hub.base.replace("http", "ws", 1) + f"{prefix}/terminals/websocket/{name}"
    conn = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {hub.tokens[user]}"}))
    output, done = "", re.compile(r"__RC=(\d+)__")
    try:
        conn.write_message(json.dumps(["stdin", f"{command}; echo __RC=$?__\r"]))
        deadline = time.monotonic() + timeout
        while not done.search(output):
            message = await asyncio.wait_for(conn.read_message(), max(0.1, deadline - time.monotonic()))
            if message is None:
                break
            kind, *data = json.loads(message)
            if kind == "stdout":
                output += data[0]
    except TimeoutError:
        raise AssertionError(f"{command!r} as {user} did not finish in {timeout} s:\n{output[-3000:]}") from None
    finally:
        conn.close()
        hub.request("DELETE", f"{prefix}/api/terminals/{name}", user)
    found = done.search(output)
    assert found, f"terminal closed before {command!r} ended:\n{output[-3000:]}"
    return int(found.group(1)), output[:found.start()]


def _kill_user_processes(uids: set[int]) -> None:
    """SIGKILL every process owned by one of ``uids`` (the test's own accounts)."""
    for _ in range(3):
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if entry.stat().st_uid in uids:
                        pids.append(int(entry.name))
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)


def cnncourse_hub(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "cnncourse.hub", *args], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, f"python -m cnncourse.hub {' '.join(args)}:\n{result.stderr[-3000:]}"
    return result.stdout


@contextlib.contextmanager
def running_hub(prefix: str, people: list[dict[str, str]], mem_limit: str = "3G") -> Iterator[Hub]:
    """The hub with ``people`` (roster rows; usernames must start with ``prefix``) until the block ends."""
    state = Path(tempfile.mkdtemp(prefix="cnncourse-hub-", dir="/tmp"))
    os.chmod(state, 0o755)
    ports = {name: str(free_port()) for name in ("CNNCOURSE_HUB_PORT", "CNNCOURSE_HUB_API_PORT",
                                                 "CNNCOURSE_PROXY_API_PORT", "CNNCOURSE_FORMGRADER_PORT")}
    env = {**os.environ, **ports, "CNNCOURSE_HUB_STATE": str(state), "CNNCOURSE_GRADER": f"{prefix}grader",
           "CNNCOURSE_HOME_BASE": str(state / "home"), "CNNCOURSE_MEM_LIMIT": mem_limit,
           "CNNCOURSE_CULL_TIMEOUT": "600"}
    env.pop("CNNCOURSE_EXCHANGE", None)
    env.pop("CNNCOURSE_USER_PYTHON", None)
    accounts = [f"{prefix}grader"] + [p["username"] for p in people]
    assert all(a.startswith(prefix) for a in accounts)
    log = state / "jupyterhub.log"
    proc = None
    try:
        cnncourse_hub(env, "setup")
        roster = state / "roster-in.csv"
        with open(roster, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(people[0]))
            writer.writeheader()
            writer.writerows(people)
        cnncourse_hub(env, "roster", str(roster), "--passwords", str(state / "passwords.csv"))
        with open(state / "passwords.csv", newline="") as f:
            passwords = {row["username"]: row["password"] for row in csv.DictReader(f)}
        settings = HubSettings.from_env(env)
        with open(log, "wb") as out:
            proc = subprocess.Popen([str(Path(sys.executable).parent / "jupyterhub"), "-f",
                                     str(PROJECT / "hub" / "jupyterhub_config.py")], cwd=state, env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        hub = Hub(f"http://127.0.0.1:{ports['CNNCOURSE_HUB_PORT']}", settings, env, log, passwords)
        deadline = time.monotonic() + 240  # the hub waits for the formgrader service to start
        while hub.request("GET", "/hub/api/").status != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"JupyterHub did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.3)
        yield hub
    finally:
        if proc is not None:
            stop_process(proc, 30)
        uids = set()
        for name in accounts:
            with contextlib.suppress(KeyError):
                uids.add(pwd.getpwnam(name).pw_uid)
        _kill_user_processes(uids)
        for name in accounts:
            subprocess.run(["userdel", "--remove", name], capture_output=True)
        shutil.rmtree(state, ignore_errors=True)
