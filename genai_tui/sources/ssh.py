"""The fleet's transport: the system's OpenSSH client, so ~/.ssh/config, agents,
ProxyJump, known_hosts and ControlMaster all work as the admin expects.

Never a prompt of ours (`BatchMode=yes`: no password, no passphrase, no "accept this
key?"), host keys always checked (`StrictHostKeyChecking=yes`: an unknown key is an
error that says how to accept it), one multiplexed connection per host (a ControlMaster
in a private socket folder, closed on quit). What ssh says on failure is put into words
(`describe`): auth failed, host key unknown or changed, refused, timed out, genai-tui not
installed there.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from genai_tui.config import HostEntry
from genai_tui.safety import one_line, redact

#: seconds to set up a connection (TCP + auth) before "timed out"
CONNECT_TIMEOUT = 10
#: a link that answers no keepalive for INTERVAL × COUNT seconds is dropped by ssh
ALIVE_INTERVAL, ALIVE_COUNT = 5, 3
#: the most stderr kept from one ssh run
MAX_STDERR = 16_384
#: exit status of ssh itself failing (anything else is the remote command's)
SSH_FAILED = 255


class ControlDir:
    """A private (0700) folder for the hosts' ControlMaster sockets, made when the first
    connection needs it and removed on close."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self._closed = False

    def socket(self) -> str:
        if self._closed:  # a late connection while the fleet closes: no new folder
            return "none"
        if self.path is None:
            base = os.environ.get("XDG_RUNTIME_DIR")
            if not base or not os.path.isdir(base) or len(base) > 40:
                base = None  # socket paths must stay short (108 bytes)
            self.path = Path(tempfile.mkdtemp(prefix="genai-tui-ssh-", dir=base))
            os.chmod(self.path, 0o700)
        return str(self.path / "%C")  # ssh's hash of host, port and user: short, unique

    def close(self) -> None:
        self._closed = True
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)


@dataclass(frozen=True)
class SshResult:
    returncode: int
    stdout: str
    stderr: str
    error: str | None  # None: the remote command ran; else why not, in words


def ssh_argv(host: HostEntry, control: ControlDir | None, *, master: str = "no"
             ) -> list[str]:
    """`ssh` with our safety options, for `host`; the remote command follows."""
    argv = ["ssh"]
    if host.ssh_config is not None:
        argv += ["-F", str(host.ssh_config)]
    opts = {
        "BatchMode": "yes", "StrictHostKeyChecking": "yes",
        "ConnectTimeout": str(CONNECT_TIMEOUT), "ServerAliveInterval": str(ALIVE_INTERVAL),
        "ServerAliveCountMax": str(ALIVE_COUNT), "ForwardAgent": "no", "ForwardX11": "no",
        "ClearAllForwardings": "yes", "PermitLocalCommand": "no",
        # JSON frames shrink about tenfold: an idle host costs a few KB a minute
        "Compression": "yes",
    }
    if control is not None:
        opts |= {"ControlMaster": master, "ControlPath": control.socket()}
        if master == "yes":
            opts["ControlPersist"] = "yes"
    for key, value in opts.items():
        argv += ["-o", f"{key}={value}"]
    if host.port is not None:
        argv += ["-p", str(host.port)]
    if host.identity is not None:
        argv += ["-i", str(host.identity)]
    argv += ["-T", "--", host.ssh]
    return argv


def remote_command(host: HostEntry, args: Sequence[str]) -> str:
    """The remote genai-tui with its config and `args`, quoted for the remote shell."""
    words = list(host.command)
    if host.config:
        words += ["--config", host.config]
    if host.readonly:
        words.append("--readonly")
    return shlex.join(words + list(args))


def open_master(host: HostEntry, control: ControlDir, timeout: float = 30.0) -> str | None:
    """Set up the host's shared connection (ssh goes to the background once it is
    authenticated); None when up, else why not, in words."""
    argv = ssh_argv(host, control, master="yes")
    argv.insert(argv.index("--"), "-N")
    argv.insert(argv.index("--"), "-f")
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s connecting"
    except OSError as exc:
        return f"cannot run ssh: {one_line(exc.strerror or exc, 200)}"
    if proc.returncode == 0:
        return None
    return describe(proc.returncode, _text(proc.stderr), host)


def close_master(host: HostEntry, control: ControlDir) -> None:
    """`ssh -O exit`: the background connection goes now, not when it times out."""
    argv = ssh_argv(host, control, master="no")
    argv.insert(argv.index("--"), "-O")
    argv.insert(argv.index("--"), "exit")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=5, check=False)


def run(host: HostEntry, control: ControlDir | None, args: Sequence[str], *,
        timeout: float = 120.0) -> SshResult:
    """Run `genai-tui ARGS` on the host (over its shared connection when there is one)."""
    argv = ssh_argv(host, control) + [remote_command(host, args)]
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return SshResult(124, "", "", f"no answer within {timeout:.0f} s")
    except OSError as exc:
        return SshResult(127, "", "", f"cannot run ssh: {one_line(exc.strerror or exc, 200)}")
    out, err = _text(proc.stdout, 4 * 1024 * 1024), _text(proc.stderr)
    return SshResult(proc.returncode, out, err, failure(proc.returncode, err, host))


def _text(data: bytes, limit: int = MAX_STDERR) -> str:
    return data[-limit:].decode("utf-8", "replace")


_NOT_FOUND = re.compile(r"(command not found|not found|No such file or directory)", re.I)


def failure(code: int, stderr: str, host: HostEntry) -> str | None:
    """Why the remote genai-tui did not run, or None when it ran (whatever its status:
    `check` exits 1 and 2 on purpose)."""
    if code == SSH_FAILED or code in (126, 127):
        return describe(code, stderr, host)
    if code == 2 and "invalid choice" in stderr:
        return (f"genai-tui on {host.name} is too old for this (it does not know the "
                "command): upgrade it there")
    return None


def describe(code: int, stderr: str, host: HostEntry) -> str:
    """ssh's failure in the words an admin needs (what to do included)."""
    err = stderr.replace("\r", "")
    where = one_line(host.ssh, 120)
    if code in (126, 127) or (code != SSH_FAILED and _NOT_FOUND.search(err)):
        return (f"genai-tui not installed there ({one_line(host.command[0], 120)} not found "
                f"on {where}; set `command` to its path)")
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in err or "Host key for" in err \
            and "has changed" in err:
        return (f"host key changed for {where}: refused (if the host was reinstalled, "
                f"check the new key, then `ssh-keygen -R {where}`)")
    if "Host key verification failed" in err or "No " in err and "host key is known" in err:
        return (f"host key unknown for {where}: refused (check its fingerprint, then "
                f"accept it once with `ssh {where}` or add it to known_hosts)")
    if "Permission denied" in err or "Too many authentication failures" in err:
        return (f"auth failed on {where} (no key accepted; BatchMode: no password is "
                "asked — load the key in your agent or set `identity`)")
    if "Connection refused" in err:
        return f"connection refused by {where} (is sshd running there?)"
    if "timed out" in err.lower() or "Timeout, server" in err:
        return f"timed out reaching {where}"
    if "Could not resolve hostname" in err or "Name or service not known" in err:
        return f"unknown host name {where}"
    if "No route to host" in err or "Network is unreachable" in err:
        return f"no route to {where}"
    if "closed by remote host" in err or "Connection closed" in err \
            or "Connection reset" in err or "Broken pipe" in err:
        return f"the link to {where} dropped"
    last = next((ln for ln in reversed(err.splitlines()) if ln.strip()), "")
    if last:
        return f"ssh failed: {one_line(redact(last), 200)}"
    return f"ssh failed (exit status {code})"
