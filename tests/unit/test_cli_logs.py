"""`genai-tui logs`: real log files of process services, a real token location whose
value must never be printed, the real CLI (in-process, and as a subprocess for
`--follow`, which must end when its reader goes)."""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from genai_tui import cli
from genai_tui.safety import is_clean

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "\x1b[31mred\x1b[0m \x1b]0;owned title\x07tail \u202eevil\x1b[2J"


@dataclass
class Stack:
    """A config with two process services (alpha, beta) whose log files we write, a
    third (gamma) whose log file is missing, and a token location holding `secret`."""

    root: Path
    config: Path
    secret: str

    def log(self, service: str) -> Path:
        return self.root / f"{service}.log"

    def append(self, service: str, *lines: str) -> None:
        with self.log(service).open("a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))


def make_stack(root: Path, *, missing: bool = False) -> Stack:
    """The stack's files under `root` (`missing`: also gamma, whose log file is absent)."""
    secret = "v" + secrets.token_hex(12)  # a plain value: only the token location knows it
    (root / "secrets.env").write_text(f"COMFY_TOKEN={secret}\n")
    services = "".join(f"""
[[services]]
name = "{name}"
url = "http://127.0.0.1:{port}"
kind = "http"
runtime = "process"
log_file = "{name}.log"
""" for name, port in (("alpha", 26001), ("beta", 26002)) + ((("gamma", 26003),)
                                                             if missing else ()))
    config = root / "genai-tui.toml"
    config.write_text(services + """
[tokens]
[[tokens.locations]]
name = "secrets"
path = "secrets.env"
format = "raw_env"
key = "COMFY_TOKEN"
""")
    stack = Stack(root, config, secret)
    stack.log("alpha").write_text("")
    stack.log("beta").write_text("")
    return stack


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return make_stack(tmp_path)


def logs(capsys, stack: Stack, *args: str) -> tuple[int, str, str]:
    code = cli.main(["--config", str(stack.config), "logs", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_tail_is_the_last_lines_of_one_service(stack, capsys):
    stack.append("alpha", *(f"line {i}" for i in range(300)))
    stack.append("beta", "not this one")
    code, out, _ = logs(capsys, stack, "alpha", "--tail", "5")
    assert code == 0
    assert out.splitlines() == [f"line {i}" for i in range(295, 300)]
    code, out, _ = logs(capsys, stack, "alpha")
    assert out.splitlines() == [f"line {i}" for i in range(100, 300)]  # default: 200


def test_secret_value_is_redacted_and_escapes_are_stripped(stack, capsys):
    stack.append("alpha", f"loaded credential {stack.secret} from disk", HOSTILE)
    for args in (["alpha"], ["alpha", "--json"], []):
        code, out, err = logs(capsys, stack, *args)
        assert code == 0
        leaked = stack.secret in out or stack.secret in err
        assert not leaked, f"the token's value was printed by `logs {' '.join(args)}`"
        assert "[redacted]" in out
        assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
        assert "red" in out and "tail" in out and "owned title" not in out


def test_without_service_every_service_is_merged_with_its_name(stack, capsys):
    stack.append("alpha", "from alpha")
    stack.append("beta", "from beta")
    code, out, _ = logs(capsys, stack)
    assert code == 0
    assert sorted(out.splitlines()) == ["alpha | from alpha", "beta  | from beta"]


def test_json_is_one_clean_object_per_line(stack, capsys):
    stack.append("alpha", "first", HOSTILE, f"token {stack.secret}")
    stack.append("beta", "other")
    code, out, _ = logs(capsys, stack, "--json")
    assert code == 0
    docs = [json.loads(line) for line in out.splitlines()]
    assert all(set(d) == {"ts", "service", "text"} for d in docs)
    assert all(isinstance(d["ts"], int) and d["ts"] > 0 for d in docs)
    assert all(is_clean(d["text"]) for d in docs)
    by = {(d["service"], d["text"]) for d in docs}
    assert ("alpha", "first") in by and ("beta", "other") in by
    assert ("alpha", "token [redacted]") in by


def test_unknown_service_names_the_configured_ones(stack, capsys):
    code, out, err = logs(capsys, stack, "nope\x1b[2J")
    assert code == 3 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "no service named" in err and "alpha, beta" in err and "\x1b" not in err


def test_missing_log_file_is_said_and_exit_3(tmp_path, capsys):
    stack = make_stack(tmp_path, missing=True)
    code, out, err = logs(capsys, stack, "gamma")
    assert code == 3 and out == ""
    assert "gamma" in err and "log file not found" in err


# ------------------------------------------------------------------ --follow


class Follow:
    """`genai-tui logs --follow` as a real subprocess, its stdout read as it comes (on
    this thread: closing the pipe under a reading thread would block)."""

    def __init__(self, stack: Stack, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "genai_tui", "--config", str(stack.config), "logs",
             "--follow", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, cwd=stack.root)
        self._buf = b""
        self.seen: list[str] = []

    def expect(self, text: str, timeout: float = 30.0) -> str:
        """The next line containing `text` (lines before it are kept in `seen`)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buf:
                raw, self._buf = self._buf.split(b"\n", 1)
                line = raw.decode("utf-8")
                self.seen.append(line)
                if text in line:
                    return line
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            if not ready:
                raise AssertionError(f"no line with {text!r} came (seen: {self.seen[-5:]})")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"the output ended before a line with {text!r}")
            self._buf += chunk

    def ended(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def test_follow_prints_appended_lines_and_ends_when_stdin_closes(stack):
    stack.append("alpha", "before")
    run = Follow(stack, "alpha", "--tail", "10")
    try:
        run.expect("before")
        stack.append("alpha", f"after {stack.secret}", HOSTILE)
        assert run.expect("after") == "after [redacted]"
        assert run.expect("tail") == "red tail evil"
        assert run.proc.stdin is not None
        run.proc.stdin.close()  # the reader went (an SSH channel closing looks like this)
        assert run.ended() == 0
        rest = run.proc.stderr.read().decode() if run.proc.stderr else ""
        assert "Traceback" not in rest
    finally:
        run.close()


def test_follow_json_reports_status_then_lines(stack):
    run = Follow(stack, "--json", "--tail", "0")
    try:
        status = json.loads(run.expect('"status"'))
        assert status["state"] == "following" and status["service"] in ("alpha", "beta")
        stack.append("beta", "late line")
        doc = json.loads(run.expect("late line"))
        assert doc["service"] == "beta" and doc["text"] == "late line"
        run.proc.send_signal(signal.SIGTERM)
        assert run.ended() == 0
    finally:
        run.close()


def test_follow_ends_on_a_broken_pipe(stack):
    run = Follow(stack, "alpha")
    try:
        stack.append("alpha", "one")
        run.expect("one")
        assert run.proc.stdout is not None
        run.proc.stdout.close()  # like `| head -1` exiting
        stack.append("alpha", "two", "three")
        assert run.ended() == 0
        rest = run.proc.stderr.read().decode() if run.proc.stderr else ""
        assert "Traceback" not in rest and "BrokenPipe" not in rest
    finally:
        run.close()
