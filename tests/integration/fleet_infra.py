"""Real parts for the fleet tests: an OpenSSH server on 127.0.0.1 and a second Docker
engine ("host b") beside the main one, each in a short /tmp folder of its own.

Why real ones: the fleet view reads remote hosts through the system's `ssh -F CONFIG
ALIAS ...`, so host keys, BatchMode, refused connections and a remote genai-tui talking
to *its own* engine must be the real thing, not a mock.

Both clean up after themselves (pytest teardown), and a folder left by a run that was
killed outright is reaped at the next start (`reap_stale()`, also
`python -m tests.integration.fleet_infra --reap`): each folder records the pid of the
process that made it, and only folders whose owner is gone are touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REQUIRE_DOCKER = os.environ.get("GENAI_TUI_REQUIRE_DOCKER") == "1"
SSHD = "/usr/sbin/sshd"
SSH_PORTS = range(23000, 23500)  # this task's range: sshd
SIM_PORTS = range(23500, 24000)  # this task's range: simulators on host b
SSH_PREFIX = "gtssh-"
ENGINE_PREFIX = "gt2-"
OWNER_FILE = "owner.pid"
STALE_GLOBS = (f"{SSH_PREFIX}*", f"{ENGINE_PREFIX}*")


def unavailable(reason: str) -> None:
    """Skip with the reason, or fail under GENAI_TUI_REQUIRE_DOCKER=1 (CI installs it)."""
    if REQUIRE_DOCKER:
        pytest.fail(f"{reason} and GENAI_TUI_REQUIRE_DOCKER=1: .ci/run installs it")
    pytest.skip(reason)


def genai_tui_path() -> Path:
    """The `genai-tui` entry point beside this interpreter (the repo's .venv in CI too)."""
    return Path(sys.executable).parent / "genai-tui"


def pick_port(ports: range) -> int:
    """A port of `ports` that nothing on 127.0.0.1 listens on now (random start, so two
    runs rarely race for the same one)."""
    start = int.from_bytes(os.urandom(2), "big") % len(ports)
    for i in range(len(ports)):
        port = ports[(start + i) % len(ports)]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"({path} unreadable: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _pid_alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def processes_mentioning(folder: Path) -> list[int]:
    """Pids whose command line names something inside `folder` (our daemons, their
    containerd and shims, ssh clients given our config): what must be gone at the end."""
    mark = str(folder)
    me = os.getpid()
    return [pid for pid in _all_pids()
            if pid != me and any(arg == mark or mark + "/" in arg for arg in _cmdline(pid))]


def _children(pid: int) -> list[int]:
    """All descendants of `pid` (from /proc's ppid fields)."""
    parent: dict[int, int] = {}
    for p in _all_pids():
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        parent[p] = int(stat.rsplit(")", 1)[1].split()[1])
    out: list[int] = []
    todo = [pid]
    while todo:
        cur = todo.pop()
        kids = [p for p, pp in parent.items() if pp == cur]
        out += kids
        todo += kids
    return out


def _kill(pids: list[int], wait: float = 10.0) -> None:
    """SIGTERM, a bounded wait, then SIGKILL for what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
            time.sleep(0.05)
        pids = [p for p in pids if _pid_alive(p)]
        if not pids:
            return


def _unix_socket_holders(folder: Path, comm: str) -> list[int]:
    """Pids named `comm` holding a unix socket bound under `folder` (ssh ControlMasters)."""
    inodes: set[str] = set()
    try:
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return []
    for line in lines:
        parts = line.split()
        if len(parts) >= 8 and parts[7].startswith(str(folder) + "/"):
            inodes.add(parts[6])
    found = []
    for pid in _all_pids():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != comm:
                continue
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                found.append(pid)
                break
    return found


def _mounts_under(folder: Path) -> list[str]:
    """Mount points inside `folder`, deepest first (overlay layers, netns, shm)."""
    mark = str(folder) + "/"
    points = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(mark) or point == str(folder):
                points.append(point)
    return sorted(set(points), key=len, reverse=True)


def _unmount_all(folder: Path) -> None:
    for point in _mounts_under(folder):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)


def _make_folder(prefix: str) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    (tmp / OWNER_FILE).write_text(f"{os.getpid()}\n")
    return tmp


# ------------------------------------------------------------------------------ sshd


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SshServer:
    """A real sshd on 127.0.0.1:<port> (our range) with its own keys and a client config
    `Host <alias>` that logs in as root with BatchMode: no prompt can ever hang a test."""

    def __init__(self, alias: str = "hostb", set_env: Mapping[str, str] | None = None,
                 *, ready_timeout: float = 20.0) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", alias):
            raise ValueError(f"unusable ssh alias {alias!r}")
        self.alias = alias
        self.tmp = _make_folder(SSH_PREFIX)
        self.state_home = self.tmp / "state"
        self.state_home.mkdir()
        env = {"XDG_STATE_HOME": str(self.state_home), "NO_COLOR": "1"}
        env.update(set_env or {})
        for k, v in env.items():
            if not _ENV_NAME.fullmatch(k) or any(c in v for c in '"\\\n\r\0'):
                raise ValueError(f"SetEnv {k!r}: name or value not usable in sshd_config")
        self.set_env = env
        self.ready_timeout = ready_timeout
        self.host_key = self.tmp / "host_ed25519"
        self.identity = self.tmp / "id_ed25519"
        self.known_hosts = self.tmp / "known_hosts"
        self.config_path = self.tmp / "ssh_config"
        self.sshd_config = self.tmp / "sshd_config"
        self.log_path = self.tmp / "sshd.log"
        self.pid_file = self.tmp / "sshd.pid"
        self.port = pick_port(SSH_PORTS)
        self._proc: subprocess.Popen[bytes] | None = None
        self._keygen(self.host_key, "gtfleet-host")
        self._keygen(self.identity, "gtfleet-client")
        shutil.copyfile(self.identity.with_suffix(".pub"), self.tmp / "authorized_keys")
        self.restore_host_key()
        self._write_configs()

    # -- files
    @staticmethod
    def _keygen(path: Path, comment: str) -> None:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                        "-f", str(path)], check=True, capture_output=True, timeout=30)

    def _known_line(self, pub: Path) -> str:
        kind, blob = pub.read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {blob}\n"

    def _write_configs(self) -> None:
        t = self.tmp
        lines = [
            f"ListenAddress 127.0.0.1:{self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.pid_file}",
            f"AuthorizedKeysFile {t / 'authorized_keys'}",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            "StrictModes no",
            "PubkeyAuthentication yes",
            "PermitUserEnvironment no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "MaxStartups 100:30:200",
            "MaxSessions 100",
            "LogLevel INFO",
        ]
        if self.set_env:  # one line: sshd keeps only the first SetEnv it reads
            lines.append("SetEnv " + " ".join(f'{k}="{v}"' for k, v in self.set_env.items()))
        self.sshd_config.write_text("\n".join(lines) + "\n")
        self.config_path.write_text("\n".join([
            f"Host {self.alias}",
            "    HostName 127.0.0.1",
            f"    Port {self.port}",
            "    User root",
            f"    IdentityFile {self.identity}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {self.known_hosts}",
            "    GlobalKnownHostsFile /dev/null",
            "    StrictHostKeyChecking yes",
            "    BatchMode yes",
            "    LogLevel ERROR",
            "    ConnectTimeout 10",
        ]) + "\n")

    def write_wrong_host_key(self) -> None:
        """known_hosts holds another host's key for [127.0.0.1]:PORT: ssh must refuse
        ("REMOTE HOST IDENTIFICATION HAS CHANGED", "Host key verification failed")."""
        other = self.tmp / "other_host_ed25519"
        if not other.exists():
            self._keygen(other, "gtfleet-impostor")
        self.known_hosts.write_text(self._known_line(other.with_suffix(".pub")))

    def write_unknown_host_key(self) -> None:
        """An empty known_hosts: with StrictHostKeyChecking yes the host is unknown."""
        self.known_hosts.write_text("")

    def restore_host_key(self) -> None:
        """known_hosts with the server's real host key again."""
        self.known_hosts.write_text(self._known_line(self.host_key.with_suffix(".pub")))

    # -- process
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    def start(self) -> None:
        """Start sshd (again, on the same port) and wait until a login succeeds."""
        if self.running:
            return
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)  # privsep dir
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self._proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.sshd_config)], stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + self.ready_timeout
        last = ""
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"sshd exited with status {self._proc.returncode}; "
                                   f"its log:\n{_tail(self.log_path)}")
            try:
                r = self.run("true", timeout=10)
                if r.returncode == 0:
                    return
                last = r.stderr.strip()
            except subprocess.TimeoutExpired:
                last = "ssh true timed out"
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd on 127.0.0.1:{self.port} did not accept a login "
                                   f"within {self.ready_timeout:.0f} s (last ssh error: "
                                   f"{last or 'none'}); its log:\n{_tail(self.log_path)}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Kill sshd and every session it serves: the "host goes away" case."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            _kill([self._proc.pid, *_children(self._proc.pid)], wait=5.0)
        self._proc.wait(timeout=10)
        self._proc = None

    def close(self) -> None:
        """Stop sshd, end ssh clients (ControlMasters) tied to our folder, remove it."""
        self.stop()
        _kill(sorted(set(_unix_socket_holders(self.tmp, "ssh"))
                     | {p for p in processes_mentioning(self.tmp)
                        if Path((_cmdline(p) or [""])[0]).name == "ssh"}), wait=5.0)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- client side
    def ssh_argv(self, *remote: str, options: Mapping[str, str] | None = None) -> list[str]:
        """`ssh -F CONFIG [-o K=V] ALIAS REMOTE` (the remote words shell-quoted once)."""
        argv = ["ssh", "-F", str(self.config_path)]
        for k, v in (options or {}).items():
            argv += ["-o", f"{k}={v}"]
        argv.append(self.alias)
        if remote:
            argv.append(shlex.join(remote))
        return argv

    def run(self, *remote: str, timeout: float = 60,
            options: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command on the host over ssh; stdin is /dev/null so nothing can prompt."""
        return subprocess.run(self.ssh_argv(*remote, options=options),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)

    def __enter__(self) -> SshServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------- second engine


def _dockerd_flags() -> str:
    try:
        return subprocess.run(["dockerd", "--help"], capture_output=True, text=True,
                              timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


class SecondEngine:
    """A second dockerd ("host b") with its own socket, data root, exec root, the
    containerd it manages under that exec root and a bridge interface of its own (no
    iptables, no ip-forward/masquerade changes); never touches /var/run/docker.sock nor
    docker0. Its containers use `network_mode="host"`, so their ports are on 127.0.0.1."""

    def __init__(self, ready_timeout: float = 60.0) -> None:
        self.tmp = _make_folder(ENGINE_PREFIX)
        self.socket = self.tmp / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.data_root = self.tmp / "data"
        self.exec_root = self.tmp / "exec"
        self.pid_file = self.tmp / "docker.pid"
        self.log_path = self.tmp / "dockerd.log"
        self.ready_timeout = ready_timeout
        # its own bridge: `--bridge none` would make dockerd DELETE the host's docker0
        # (moby's removeDefaultBridgeInterface), breaking the main engine's default network
        self.bridge = f"gt2br-{os.urandom(3).hex()}"
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None
        (self.tmp / "daemon.json").write_text("{}\n")  # not /etc/docker/daemon.json
        self._proc: subprocess.Popen[bytes] | None = None
        self._clients: list[Any] = []

    def argv(self) -> list[str]:
        argv = ["dockerd", "-H", self.url, "--data-root", str(self.data_root),
                "--exec-root", str(self.exec_root), "--pidfile", str(self.pid_file),
                "--config-file", str(self.tmp / "daemon.json"), "--bridge", self.bridge,
                "--iptables=false", "--ip-forward=false", "--ip-masq=false"]
        if "--ip6tables" in _dockerd_flags():
            argv.append("--ip6tables=false")
        return argv

    def start(self) -> None:
        """Start dockerd and wait for its API; RuntimeError with its log tail otherwise."""
        import docker

        t0 = time.monotonic()
        _make_bridge(self.tmp, self.bridge)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self._proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=log, start_new_session=True)
        finally:
            log.close()
        deadline = t0 + self.ready_timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with status {self._proc.returncode}; "
                                   f"its log:\n{_tail(self.log_path)}")
            if self.socket.exists():
                try:
                    c = docker.DockerClient(base_url=self.url, timeout=5)
                    try:
                        c.ping()
                    finally:
                        c.close()
                    self.start_seconds = time.monotonic() - t0
                    return
                except Exception:  # not answering yet
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not answer on {self.url} within "
                                   f"{self.ready_timeout:.0f} s; its log:\n"
                                   f"{_tail(self.log_path)}")
            time.sleep(0.1)

    def client(self) -> Any:
        """A docker-py client of this engine (closed at teardown)."""
        import docker

        c = docker.DockerClient(base_url=self.url, timeout=60)
        self._clients.append(c)
        return c

    def leftovers(self) -> list[str]:
        """What of this engine is still there: processes naming its folder, mounts."""
        out = [f"pid {p}: {' '.join(_cmdline(p))[:200]}" for p in processes_mentioning(self.tmp)]
        out += [f"mount {m}" for m in _mounts_under(self.tmp)]
        return out

    def close(self) -> None:
        """Remove every container, stop dockerd (SIGTERM, bounded wait, SIGKILL), then its
        containerd and shims if still there, unmount what is left, remove the folder."""
        t0 = time.monotonic()
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(Exception):
                c = self.client()
                for ct in c.containers.list(all=True):
                    with contextlib.suppress(Exception):
                        ct.remove(force=True)
        for c in self._clients:
            with contextlib.suppress(Exception):
                c.close()
        self._clients.clear()
        if self._proc is not None:
            if self._proc.poll() is None:
                _kill([self._proc.pid], wait=20.0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None
        _teardown_folder(self.tmp)
        self.stop_seconds = time.monotonic() - t0

    def __enter__(self) -> SecondEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


BRIDGE_FILE = "bridge"


def _make_bridge(tmp: Path, name: str) -> None:
    """A bridge interface of our own (on a /24 of 10.234.0.0/16 no route uses), named in
    `tmp/bridge` so even a reaper finds and deletes it."""
    if shutil.which("ip") is None:
        raise RuntimeError("the `ip` command (iproute2) is needed to give the second "
                           "engine a bridge of its own")
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True,
                            timeout=30).stdout
    used = {int(m) for m in re.findall(r"\b10\.234\.(\d+)\.", routes)}
    free = [n for n in range(1, 255) if n not in used]
    if not free:
        raise RuntimeError("no free 10.234.N.0/24 for the second engine's bridge")
    octet = free[int.from_bytes(os.urandom(1), "big") % len(free)]
    (tmp / BRIDGE_FILE).write_text(name + "\n")
    for cmd in (["ip", "link", "add", name, "type", "bridge"],
                ["ip", "addr", "add", f"10.234.{octet}.1/24", "dev", name]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")


def _teardown_folder(tmp: Path) -> None:
    """Whatever still names `tmp` (containerd, shims, sshd, dockerd left by a killed
    run): killed; its mounts undone; its bridge deleted; the folder removed."""
    pids = processes_mentioning(tmp)
    # a shim's container outlives the shim: its processes go too
    pids += [c for p in pids for c in _children(p) if c not in pids]
    if pids:
        _kill(pids, wait=10.0)
    _unmount_all(tmp)
    with contextlib.suppress(OSError):
        bridge = (tmp / BRIDGE_FILE).read_text().strip()
        if re.fullmatch(r"gt2br-[0-9a-f]{6}", bridge):
            subprocess.run(["ip", "link", "del", bridge], capture_output=True, timeout=30)
    shutil.rmtree(tmp, ignore_errors=True)


def reap_stale() -> list[Path]:
    """Folders of ours whose owner process is gone (a run killed outright): cleaned."""
    reaped = []
    for pattern in STALE_GLOBS:
        for tmp in Path("/tmp").glob(pattern):
            try:
                owner = int((tmp / OWNER_FILE).read_text().strip())
            except (OSError, ValueError):
                continue  # not ours, or being made right now
            if owner == os.getpid() or _pid_alive(owner):
                continue
            _teardown_folder(tmp)
            reaped.append(tmp)
    return reaped


# ----------------------------------------------------------------- the stack on host b


@dataclass
class RemoteStack:
    """The simulated services on the second engine and the genai-tui.toml that watches
    them (its `[docker] host` is the second engine's URL)."""

    config_path: Path
    engine_url: str
    services: dict[str, str]  # service name -> container name
    ports: dict[str, int]  # service name -> port on 127.0.0.1 (host network)
    owner: str
    client: Any = field(repr=False, default=None)  # docker-py client of the second engine

    @property
    def containers(self) -> list[str]:
        return list(self.services.values())

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def remove(self) -> None:
        from genai_tui import simdocker

        if self.client is not None:
            simdocker.remove_owned(self.client, self.owner)


def _wait_http(url: str, timeout: float, what: Callable[[], str]) -> None:
    """Until the URL answers HTTP at all (any status): the sim's port is open."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s: {what()}")
        time.sleep(0.1)


def start_sim_stack(engine: SecondEngine, root: Path, prefix: str, *,
                    comfy_scenario: str = "healthy", auth: bool = True,
                    ready_timeout: float = 60.0) -> RemoteStack:
    """A ComfyUI (`comfy_scenario`) and an orchestrator that probes it, as containers on
    `engine` (host network), plus `root/genai-tui.toml`, whose `check` is OK (exit 0).

    auth=True: ComfyUI-Login has a PASSWORD (hash of a random password, 0600 in
    root/login/comfyui) and the config says `auth = true` with that file as the one token
    copy. auth=False: no PASSWORD and `auth = false` (the healthy sim is then in its
    first-login state: `check` says password_missing, critical, exit 2; with
    comfy_scenario="login_missing" it is OK again)."""
    from genai_tui import simdocker

    client = engine.client()
    simdocker.ensure_image(client)
    root.mkdir(parents=True, exist_ok=True)
    ports = {"comfyui": pick_port(SIM_PORTS)}
    ports["orchestrator"] = pick_port(range(ports["comfyui"] + 1, SIM_PORTS.stop)) \
        if ports["comfyui"] + 1 < SIM_PORTS.stop else pick_port(SIM_PORTS)
    names = {"comfyui": f"{prefix}comfyui", "orchestrator": f"{prefix}orchestrator"}
    stack = RemoteStack(root / "genai-tui.toml", engine.url, names, ports, owner=prefix,
                        client=client)
    login = root / "login" / "comfyui"
    if auth:
        import bcrypt

        login.mkdir(parents=True, exist_ok=True)
        login.chmod(0o700)
        password = login / "PASSWORD"
        hashed = bcrypt.hashpw(os.urandom(24).hex().encode(), bcrypt.gensalt(10)).decode()
        password.write_text(f"{hashed}\nadmin")
        password.chmod(0o600)
    try:
        simdocker.run_sim(client, name=names["comfyui"], kind="comfyui",
                          scenario=comfy_scenario, container_port=ports["comfyui"],
                          login_dir=login if auth else None, publish=False,
                          network="host", owner=prefix, extra_args=["--name", "comfyui"])
        simdocker.run_sim(client, name=names["orchestrator"], kind="orchestrator",
                          container_port=ports["orchestrator"], publish=False,
                          network="host", owner=prefix,
                          extra_args=["--name", "orchestrator", "--backends",
                                      f"comfyui=http://127.0.0.1:{ports['comfyui']}/"])
        for svc, path in (("comfyui", "/system_stats"), ("orchestrator", "/health")):
            def logs(name: str = names[svc]) -> str:
                try:
                    return client.containers.get(name).logs(tail=20).decode(errors="replace")
                except Exception as exc:  # gone, engine down
                    return f"(no logs: {type(exc).__name__})"
            _wait_http(stack.url(svc) + path, ready_timeout, logs)
    except BaseException:
        stack.remove()
        raise
    lines = ["# the simulated stack of host b (tests/integration/fleet_infra.py)", "",
             "[docker]", f"host = {json.dumps(engine.url)}", ""]
    for svc in ("comfyui", "orchestrator"):
        lines += ["[[services]]", f'name = "{svc}"', f'url = "{stack.url(svc)}"',
                  f'kind = "{svc}"', f'container = "{names[svc]}"',
                  f"auth = {'true' if auth and svc == 'comfyui' else 'false'}",
                  'health_path = "/health"', ""]
    if auth:  # the one credential copy: ComfyUI-Login's own PASSWORD file
        lines += ["[tokens]", 'canonical = "password"', 'restart_after_unify = ["comfyui"]',
                  "", "[[tokens.locations]]", 'name = "password"',
                  'path = "login/comfyui/PASSWORD"', 'format = "password_file"', ""]
    else:
        lines += ["[tokens]", "locations = []", ""]
    stack.config_path.write_text("\n".join(lines))
    return stack


# ----------------------------------------------------------------------- fixtures


def need(cmd: str) -> None:
    """Skip (fail under GENAI_TUI_REQUIRE_DOCKER=1) when `cmd` is not installed."""
    if shutil.which(cmd) is None and not Path(cmd).exists():
        unavailable(f"{cmd} is not installed")


def need_sshd() -> None:
    """Skip (fail under GENAI_TUI_REQUIRE_DOCKER=1) where a test sshd cannot run."""
    for cmd in (SSHD, "ssh", "ssh-keygen"):
        need(cmd)
    if os.geteuid() != 0:
        unavailable("the test sshd logs in as root, so it needs root")


@pytest.fixture
def make_ssh_server() -> Iterator[Callable[..., SshServer]]:
    """Factory: `make_ssh_server(alias="hostb", set_env={...})` -> a started SshServer
    (XDG_STATE_HOME=<its tmp>/state and NO_COLOR=1 are set for remote commands unless
    overridden); every one is closed at teardown."""
    need_sshd()
    reap_stale()
    made: list[SshServer] = []

    def make(alias: str = "hostb", set_env: Mapping[str, str] | None = None) -> SshServer:
        server = SshServer(alias, set_env)
        made.append(server)
        try:
            server.start()
        except RuntimeError as exc:
            pytest.fail(str(exc))
        return server

    yield make
    for server in made:
        server.close()


@pytest.fixture
def ssh_server(make_ssh_server: Callable[..., SshServer]) -> SshServer:
    """A started SshServer, alias `hostb`."""
    return make_ssh_server()


@pytest.fixture(scope="session")
def second_engine() -> Iterator[SecondEngine]:
    """A started SecondEngine for the whole session. Skipped where no dockerd is
    installed, or where the main engine is not reachable (Docker tests are skipped
    there: CI's pass 1); failed under GENAI_TUI_REQUIRE_DOCKER=1."""
    need("dockerd")
    need("containerd")
    import docker

    try:
        main = docker.from_env(timeout=10)
        main.ping()
        main.close()
    except Exception as exc:  # any failure means "no engine here"
        unavailable(f"no Docker engine reachable ({type(exc).__name__}), so no second one "
                    "is started either")
    if os.geteuid() != 0:
        unavailable("a second dockerd needs root")
    reap_stale()
    engine = SecondEngine()
    try:
        engine.start()
    except RuntimeError as exc:
        engine.close()
        unavailable(f"the second dockerd could not start here: {exc}")
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def remote_stack(second_engine: SecondEngine, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[RemoteStack]:
    """start_sim_stack on the second engine for a module; its containers removed after."""
    stack = start_sim_stack(second_engine, tmp_path_factory.mktemp("hostb"),
                            f"gtfleet-{os.getpid()}-")
    yield stack
    stack.remove()


def main(argv: list[str]) -> int:
    """`--reap`: clean folders (daemons, mounts) left by runs that were killed."""
    if argv != ["--reap"]:
        print("usage: python -m tests.integration.fleet_infra --reap", file=sys.stderr)
        return 2
    for tmp in reap_stale():
        print(f"reaped {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
