"""`genai-tui demo` on a real terminal (tmux): its containers and processes are removed when
the user quits, when the terminal closes (tmux kill-session: SIGHUP), on SIGTERM and even
when the demo is killed outright; a second demo is refused while one runs, naming its pid,
and leaves the first one's containers and files alone; a stale lock is taken over."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from genai_tui import demo as demomod
from genai_tui import simdocker

ROOT = Path(__file__).resolve().parents[2]
TMUX = shutil.which("tmux")
needs_tmux = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")

UP_TIMEOUT = 120.0  # four containers, two bcrypt hashes and the dashboard's first frame
GONE_TIMEOUT = 30.0


def poll(predicate: Callable[[], object], timeout: float, what: str,
         describe: Callable[[], str] = lambda: "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout:.0f}s. {describe()}")


#: the demo's own liveness check (a zombie counts as gone)
alive = demomod.pid_alive


class Demo:
    """One `genai-tui demo` in its own tmux server (private socket, no user config)."""

    def __init__(self, root: Path, project: str) -> None:
        self.root = root
        self.project = project
        self.socket = f"gtt-{project}"
        self.env = {
            "PYTHONPATH": str(ROOT),
            "GENAI_TUI_DEMO_PROJECT": project,
            "HOME": os.environ.get("HOME", "/root"),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
        }
        self.env.update({k: v for k, v in os.environ.items() if k.startswith("DOCKER_")})

    def argv(self, *args: str, root: Path | None = None) -> list[str]:
        return [sys.executable, "-m", "genai_tui.cli", "demo", "--dir", str(root or self.root),
                *args]

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TMUX or "tmux", "-L", self.socket, "-f", "/dev/null", *args],
                              capture_output=True, text=True, timeout=30, check=check)

    def start(self, *args: str) -> None:
        line = "exec env -i " + " ".join(
            shlex.quote(f"{k}={v}") for k, v in {**self.env, "TERM": "tmux-256color"}.items()
        ) + " " + shlex.join(self.argv(*args))
        self.tmux("new-session", "-d", "-s", "demo", "-x", "120", "-y", "40", line)

    def pid(self) -> int:
        return int(self.tmux("display-message", "-p", "-t", "demo", "#{pane_pid}")
                   .stdout.strip())

    def screen(self) -> str:
        proc = self.tmux("capture-pane", "-p", "-t", "demo", check=False)
        return proc.stdout if proc.returncode == 0 else f"(no pane: {proc.stderr.strip()})"

    def running(self) -> bool:
        return self.tmux("has-session", "-t", "demo", check=False).returncode == 0

    def wait_dashboard(self) -> None:
        poll(lambda: "genai-tui v" in self.screen() and "comfyui-qwen" in self.screen(),
             UP_TIMEOUT, "the dashboard on the demo stack",
             lambda: f"screen:\n{self.screen()}\nreaper log: {self.reaper_log()}")

    def reaper_log(self) -> str:
        try:
            return (self.root / "demo-reaper.log").read_text()[-2000:]
        except OSError:
            return "(none)"

    def second(self, *args: str, root: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Another demo started while this one runs (no terminal: it must refuse first)."""
        return subprocess.run(self.argv(*args, root=root), capture_output=True, text=True,
                              timeout=90, stdin=subprocess.DEVNULL,
                              env={**self.env, "TERM": "dumb"})

    def close(self) -> None:
        self.tmux("kill-server", check=False)


@pytest.fixture
def demo(tmp_path) -> Iterator[Demo]:
    d = Demo(tmp_path / "demo", f"gtt-demo-{secrets.token_hex(3)}")
    yield d
    d.close()


@pytest.fixture
def docker_demo(demo, docker_client) -> Iterator[Demo]:
    yield demo
    demo.close()
    # whatever happened, nothing of this test's demo stays behind
    simdocker.remove_owned(docker_client, demo.project)
    for net in docker_client.networks.list(names=[f"{demo.project}-net"]):
        try:
            net.remove()
        except Exception:
            pass


def containers(client, project: str) -> list[dict]:
    """One list call, no inspect per container: the demo may remove a container between
    the two (a takeover), which made docker-py's list raise NotFound."""
    return client.api.containers(all=True,
                                 filters={"label": f"{simdocker.OWNER_LABEL}={project}"})


def state(client, project: str) -> dict[str, tuple[str, str]]:
    return {c["Names"][0].lstrip("/"): (c["Id"], c["State"])
            for c in containers(client, project)}


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def files(root: Path) -> dict[str, bytes]:
    """The demo's token files, config and pid files (not what the running dashboard itself
    writes: logs, its audit log and state in .genai-tui/)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix != ".log" and p.name != "demo.lock"
            and ".genai-tui" not in p.relative_to(root).parts}


def end(demo: Demo, how: str) -> None:
    if how == "quit":
        demo.tmux("send-keys", "-t", "demo", "q")
    elif how == "hangup":  # the terminal goes away: tmux sends SIGHUP
        demo.tmux("kill-session", "-t", "demo")
    elif how == "sigterm":
        os.kill(demo.pid(), signal.SIGTERM)
    elif how == "sigkill":  # no cleanup code can run in the demo itself
        os.kill(demo.pid(), signal.SIGKILL)
    else:
        raise ValueError(how)


@needs_tmux
@pytest.mark.parametrize("how", ["quit", "hangup", "sigterm", "sigkill"])
def test_demo_containers_are_removed_however_the_demo_ends(docker_demo, docker_client, how):
    demo = docker_demo
    demo.root.mkdir(parents=True)
    if how == "quit":  # a lock left by a demo that died: taken over, not a refusal
        (demo.root / "demo.lock").write_text(f"{dead_pid()}\n")
    demo.start()
    poll(lambda: [s for _, s in state(docker_client, demo.project).values()
                  if s == "running"] and len(state(docker_client, demo.project)) == 4,
         UP_TIMEOUT, "four running demo containers",
         lambda: f"containers: {state(docker_client, demo.project)}; screen:\n"
                 f"{demo.screen()}")
    demo.wait_dashboard()
    pid = demo.pid()
    assert (demo.root / "demo.lock").read_text().strip() == str(pid)
    end(demo, how)
    poll(lambda: not containers(docker_client, demo.project), GONE_TIMEOUT,
         f"demo containers removed after {how}",
         lambda: f"left: {state(docker_client, demo.project)}; reaper log: "
                 f"{demo.reaper_log()}")
    poll(lambda: not docker_client.networks.list(names=[f"{demo.project}-net"]),
         GONE_TIMEOUT, f"demo network removed after {how}")
    poll(lambda: not alive(pid), GONE_TIMEOUT, "the demo process ended")


@needs_tmux
def test_a_second_demo_is_refused_and_leaves_the_first_alone(docker_demo, docker_client,
                                                             tmp_path):
    demo = docker_demo
    demo.start()
    poll(lambda: len([s for _, s in state(docker_client, demo.project).values()
                      if s == "running"]) == 4, UP_TIMEOUT, "four running demo containers",
         lambda: demo.screen())
    demo.wait_dashboard()
    pid = demo.pid()
    before, before_files = state(docker_client, demo.project), files(demo.root)

    same = demo.second()
    assert same.returncode != 0, same.stdout + same.stderr
    assert f"pid {pid}" in same.stderr, same.stdout + same.stderr
    # another folder, the same containers: refused as well
    other = demo.second(root=tmp_path / "other-folder")
    assert other.returncode != 0, other.stdout + other.stderr
    assert f"pid {pid}" in other.stderr, other.stdout + other.stderr

    assert state(docker_client, demo.project) == before
    assert files(demo.root) == before_files
    assert demo.running() and alive(pid)
    demo.wait_dashboard()

    end(demo, "hangup")
    poll(lambda: not containers(docker_client, demo.project), GONE_TIMEOUT,
         "demo containers removed after the hangup",
         lambda: f"left: {state(docker_client, demo.project)}")


def local_pids(root: Path) -> list[int]:
    found = []
    for f in sorted((root / "run").glob("*.pid")):
        try:
            found.append(int(f.read_text().strip()))
        except (OSError, ValueError):
            pass
    return found


@needs_tmux
def test_local_demo_processes_end_with_the_terminal_and_a_second_is_refused(demo):
    """No Docker needed: the same promises for `demo --local` (simulators as processes)."""
    demo.start("--local")
    sims: list[int] = []
    try:
        poll(lambda: len(local_pids(demo.root)) == 4
             and all(map(alive, local_pids(demo.root))),
             UP_TIMEOUT, "four simulator processes", lambda: demo.screen())
        demo.wait_dashboard()
        pid, sims = demo.pid(), local_pids(demo.root)
        check_local(demo, pid, sims)
    finally:
        for p in sims or local_pids(demo.root):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass


def check_local(demo: Demo, pid: int, sims: list[int]) -> None:
    before_files = files(demo.root)

    second = demo.second("--local")
    assert second.returncode != 0, second.stdout + second.stderr
    assert f"pid {pid}" in second.stderr, second.stdout + second.stderr
    assert files(demo.root) == before_files and all(map(alive, sims))

    end(demo, "hangup")
    poll(lambda: not any(map(alive, sims)), GONE_TIMEOUT, "simulator processes ended",
         lambda: f"alive: {[p for p in sims if alive(p)]}; reaper log: {demo.reaper_log()}")
    poll(lambda: not alive(pid), GONE_TIMEOUT, "the demo process ended")


# ------------------------------------------------------------------ the lock itself

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
if len(sys.argv) > 2:  # the pid of a demo that has ended, its cleanup still holding on
    os.ftruncate(fd, 0)
    os.write(fd, sys.argv[2].encode())
print("held", flush=True)
time.sleep(float(os.environ.get("HOLD_FOR", "60")))
"""


def hold(path: Path, pid: int | None = None, seconds: float = 60) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path),
                             *([str(pid)] if pid else [])], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "HOLD_FOR": str(seconds)})
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_lock_records_the_pid_and_refuses_a_second_naming_it(tmp_path):
    first = demomod.DemoLock(tmp_path)
    first.acquire()
    try:
        assert (tmp_path / "demo.lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(demomod.DemoBusy, match=rf"running \(pid {os.getpid()}, "):
            demomod.DemoLock(tmp_path).acquire(wait=0)
    finally:
        first.release()
    again = demomod.DemoLock(tmp_path)
    again.acquire(wait=0)  # released: free again
    again.release()


def test_lock_held_by_a_live_process_is_refused_at_once(tmp_path):
    proc = hold(tmp_path / "demo.lock")
    try:
        (tmp_path / "demo.lock").write_text(f"{proc.pid}\n")
        started = time.monotonic()
        with pytest.raises(demomod.DemoBusy, match=rf"pid {proc.pid}"):
            demomod.DemoLock(tmp_path).acquire(wait=10)
        assert time.monotonic() - started < 2
    finally:
        proc.kill()
        proc.wait()


def test_stale_lock_of_a_dead_demo_is_taken_over(tmp_path):
    (tmp_path / "demo.lock").write_text(f"{dead_pid()}\n")
    lock = demomod.DemoLock(tmp_path)
    lock.acquire(wait=0)
    try:
        assert (tmp_path / "demo.lock").read_text() == f"{os.getpid()}\n"
    finally:
        lock.release()


def test_a_finished_demo_still_cleaning_up_is_waited_for(tmp_path):
    """Its pid is gone but its reaper still holds the lock: wait, then take over; refuse
    (saying why) if the cleanup takes too long."""
    gone = dead_pid()
    proc = hold(tmp_path / "demo.lock", gone, seconds=1.0)
    try:
        lock = demomod.DemoLock(tmp_path)
        started = time.monotonic()
        lock.acquire(wait=20)
        assert 0.3 < time.monotonic() - started < 15
        lock.release()
    finally:
        proc.wait()
    proc = hold(tmp_path / "demo.lock", gone, seconds=60)
    try:
        with pytest.raises(demomod.DemoBusy, match=rf"pid {gone}.*still cleaning up"):
            demomod.DemoLock(tmp_path).acquire(wait=0.5)
    finally:
        proc.kill()
        proc.wait()
