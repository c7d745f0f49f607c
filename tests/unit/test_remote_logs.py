"""RemoteLogHub on this machine's host (entry None): real `python -m genai_tui logs
--follow --json` subprocesses over real log files, and real hostile streams, read as the
remote host's log panel reads them. (The ssh path is the fleet test's.)"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from genai_tui import config as configmod
from genai_tui.engine.fleet import RemoteHost
from genai_tui.engine.remote_logs import RemoteLogHub, RemoteLogSource
from genai_tui.safety import is_clean
from tests.conftest import wait_for
from tests.unit.test_cli_logs import HOSTILE, Stack, make_stack


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return make_stack(tmp_path)


@pytest.fixture
def hub(stack: Stack):
    cfg = configmod.load_file(stack.config, env={})
    hub = RemoteLogHub(RemoteHost(None, local_config=cfg))
    yield hub
    hub.close()


def texts(src) -> list[str]:
    return [ln.text for ln in src.snapshot()]


def gone(pid: int | None) -> bool:
    """The process exited and was reaped (its pid is free again)."""
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_one_service_backlog_then_new_lines_cleaned_and_redacted(stack, hub):
    stack.append("alpha", "first", f"credential {stack.secret} loaded", HOSTILE)
    src = hub.follower("alpha")
    wait_for(lambda: src.total >= 3, timeout=30)
    assert texts(src) == ["first", "credential [redacted] loaded", "red tail evil"]
    assert src.status_text.startswith("log file ")  # as the local panel says it
    stack.append("alpha", f"later {stack.secret}")
    got = wait_for(src.drain, timeout=30)
    assert [ln.text for ln in got] == ["later [redacted]"]
    assert all(ln.service == "alpha" and ln.ts > 0 for ln in src.snapshot())
    assert hub.follower("alpha") is src  # the view on screen keeps its stream
    assert hub.followers == {"alpha": src}


def test_switching_views_ends_the_previous_process(stack, hub):
    stack.append("alpha", "a1")
    stack.append("beta", "b1")
    one = hub.follower("alpha")
    wait_for(lambda: one.pid is not None and one.total >= 1, timeout=30)
    pid = one.pid
    merged = hub.merged()
    assert [f.service for f in merged.followers] == ["alpha", "beta"]
    wait_for(lambda: merged.total >= 2, timeout=30)
    assert sorted((ln.service, ln.text) for ln in merged.snapshot()) == [
        ("alpha", "a1"), ("beta", "b1")]
    wait_for(lambda: not one.alive and gone(pid), timeout=30)
    assert hub.followers == {"all": merged}  # one stream per open view
    wait_for(lambda: merged.status_text == "following", timeout=30)
    assert merged.read_times  # log files: their lines carry the time they were read
    pid = merged.pid
    hub.close()
    assert not merged.alive and gone(pid) and hub.followers == {}


def test_unknown_service_is_reported_in_the_status(hub):
    src = hub.follower("nope")
    wait_for(lambda: src.error, timeout=30)
    assert src.status_text.startswith("unreachable: no service named 'nope'")
    assert "alpha, beta" in src.status_text
    again = hub.follower("nope")
    assert again is not src  # a failed stream is started again when asked again


# ------------------------------------------------------------------ hostile streams


def stream(where: Path, *records: object, raw: tuple[bytes, ...] = (),
           hold: bool = True) -> list[str]:
    """argv of a real process printing `raw` lines and `records` (as JSON), then waiting
    for stdin to close (as `logs --follow` does) unless not `hold`."""
    data = where / "stream.bin"
    data.write_bytes(b"".join(x + b"\n" for x in list(raw) + [
        json.dumps(r).encode() for r in records]))
    code = ("import sys\n"
            f"sys.stdout.buffer.write(open({str(data)!r}, 'rb').read())\n"
            "sys.stdout.flush()\n"
            + ("sys.stdin.buffer.read()\n" if hold else ""))
    return [sys.executable, "-c", code]


def test_garbage_is_skipped_and_text_cleaned_again(tmp_path):
    argv = stream(
        tmp_path, {"ts": 5, "service": "alpha", "text": f"{HOSTILE}\nsecond\x00 line"},
        {"ts": "soon", "service": "alpha", "text": "Authorization: Bearer abcdefgh12345678"},
        {"service": "alpha", "state": "missing", "status": "log file \x1b[31mgone"},
        {"service": "beta", "state": "following", "status": "following"},
        {"ts": 7, "service": "be\x1b]0;x\x07ta", "text": "ok", "meta": True},
        [1, 2], {"service": "alpha"}, "text only",
        raw=(b"Welcome to the host!", b"[" * 200_000, b"{" + b"x" * (2 << 20), b"\xff\xfe"))
    src = RemoteLogSource(argv, names=["alpha", "beta"]).start()
    try:
        wait_for(lambda: src.total >= 3 and src.skipped >= 7, timeout=30)
        lines = src.snapshot()
        assert [ln.text for ln in lines] == [
            "red tail evilsecond line", "Authorization: Bearer [redacted]", "ok"]
        assert all(is_clean(ln.text) and is_clean(ln.service) for ln in lines)
        assert [ln.ts for ln in lines] == [5, 0, 7]
        assert lines[2].kind == "meta" and lines[2].service == "beta"
        assert src.skipped >= 6
        assert src.status_text == "alpha: log file gone"
        assert is_clean(src.status_text)
    finally:
        src.close()
    assert not src.alive and gone(src.pid)


def test_a_failed_command_says_why(tmp_path):
    code = "import sys; sys.stderr.write('boom: \\x1b[31mdisk on fire\\n'); sys.exit(5)"
    src = RemoteLogSource([sys.executable, "-c", code], service="alpha").start()
    wait_for(lambda: src.error, timeout=30)
    assert src.status_text == "unreachable: boom: disk on fire"
    missing = RemoteLogSource([str(tmp_path / "no-such-genai-tui")], service="alpha").start()
    wait_for(lambda: missing.error, timeout=30)
    assert missing.status_text.startswith("unreachable: cannot start the log stream")
    quiet = RemoteLogSource(stream(tmp_path, {"ts": 1, "service": "a", "text": "x"},
                                   hold=False),
                            service="alpha").start()
    wait_for(lambda: quiet.error, timeout=30)
    assert quiet.status_text == "unreachable: the log stream ended (exit status 0)"
    assert quiet.total == 1


def test_close_kills_a_process_that_ignores_the_end(tmp_path):
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('{\"service\": \"alpha\", \"text\": \"hi\"}', flush=True)\n"
            "sys.stdin.close()\n"
            "time.sleep(600)\n")
    src = RemoteLogSource([sys.executable, "-c", code], service="alpha").start()
    wait_for(lambda: src.total == 1, timeout=30)
    pid = src.pid
    src.close(timeout=0.5)
    assert not src.alive and gone(pid) and src.status_text == "closed"
