"""`genai-tui stream --json`, the remote half of the fleet, as a real process: a hello,
a full frame, changes, an answer to `refresh`, no secret, and an end when its reader
goes (stdin closed, SIGHUP) — never a hang."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

from genai_tui.engine import wire
from tests.tokens_helpers import leaks, make_stack, write_config


def start(cfg_path, tmp_path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    return subprocess.Popen(
        [sys.executable, "-m", "genai_tui", "--config", str(cfg_path), "stream", "--json",
         "--interval", "0.2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env, cwd=tmp_path)


def read_until(proc, kind: str, seen: list[dict], raw: list[bytes], timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if not ready:
            continue
        line = proc.stdout.readline()
        assert line, "the stream ended early: " + proc.stderr.read().decode()[-2000:]
        raw.append(line)
        frame = wire.loads(line)
        seen.append(frame)
        if frame["type"] == kind:
            return frame
    raise AssertionError(f"no {kind} frame; got {[f['type'] for f in seen]}")


def test_hello_full_refresh_and_the_end_when_stdin_closes(tmp_path):
    stack = make_stack(tmp_path / "stack")
    cfg = write_config(stack)
    proc = start(cfg, tmp_path)
    seen: list[dict] = []
    raw: list[bytes] = []
    try:
        hello = read_until(proc, "hello", seen, raw)
        assert hello["protocol"] == wire.PROTOCOL
        assert [s["name"] for s in hello["config"]["services"]] == ["qwen"]
        full = read_until(proc, "full", seen, raw)
        assert set(full["parts"]) == set(wire.STREAM_PARTS)
        parts = wire.decode_parts(full)
        assert [c.service for c in parts["containers"]] == ["qwen"]
        assert {loc.name for loc in parts["tokens"].locations} >= {"secrets", "env-raw"}
        proc.stdin.write(b'{"cmd": "refresh", "part": null}\n')
        proc.stdin.flush()
        read_until(proc, "refreshed", seen, raw)
        proc.stdin.close()  # the SSH channel closed
        proc.wait(timeout=20)
        raw.append(proc.stdout.read())
        assert proc.returncode == 0
        assert any(b'"type":"bye"' in chunk for chunk in raw)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = b"".join(raw).decode()
    assert leaks(text, [stack.raw, stack.hash]) == []


def test_sighup_ends_it_and_garbage_commands_are_ignored(tmp_path):
    stack = make_stack(tmp_path / "stack")
    proc = start(write_config(stack), tmp_path)
    seen: list[dict] = []
    try:
        read_until(proc, "full", seen, [])
        proc.stdin.write(b"\x1b[31mnot json\n{\"cmd\": \"restart\"}\n" + b"x" * 10_000 + b"\n")
        proc.stdin.flush()
        proc.send_signal(signal.SIGHUP)
        proc.wait(timeout=20)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_reader_that_goes_away_ends_it(tmp_path):
    stack = make_stack(tmp_path / "stack")
    proc = start(write_config(stack), tmp_path)
    try:
        read_until(proc, "full", [], [])
        proc.stdout.close()  # the pipe breaks at the next frame
        proc.stdin.close()
        proc.wait(timeout=20)
        assert proc.returncode == 0
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_json_lines_only(tmp_path):
    """Every line of the stream is one JSON object (a reader splits on newlines)."""
    stack = make_stack(tmp_path / "stack")
    proc = start(write_config(stack), tmp_path)
    raw: list[bytes] = []
    try:
        read_until(proc, "full", [], raw)
    finally:
        proc.kill()
        proc.wait()
    for line in raw:
        assert line.endswith(b"\n") and isinstance(json.loads(line), dict)
