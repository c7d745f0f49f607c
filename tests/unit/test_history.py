"""Issue #18, the event store and the recorder: a real SQLite file in a real folder (WAL,
one writer by flock), real processes killed with SIGKILL mid-write, a real read-only
folder (as an unprivileged user when the tests run as root), a corrupt file; the recorder
driven by a real `Stack` whose parts are published as the monitors would."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from genai_tui import cli
from genai_tui.config import Config, HistoryConfig, ServiceConfig, TokensConfig
from genai_tui.engine import actions, history
from genai_tui.engine.history import EventStore, Recorder, make_event
from genai_tui.engine.live import Stack
from genai_tui.model import (
    ContainerInfo,
    Finding,
    GpuInfo,
    GpuProcess,
    GpuReport,
    ProbeResult,
    Severity,
    TokenLocationStatus,
    TokensReport,
)
from tests.conftest import make_hash

ROOT = Path(__file__).resolve().parents[2]


def config(tmp_path: Path, **hist) -> Config:
    return Config(services=(ServiceConfig("qwen", "http://127.0.0.1:1", container="qwen"),
                            ServiceConfig("flux", "http://127.0.0.1:2", container="flux")),
                  tokens=TokensConfig(state_dir=tmp_path / "st"),
                  history=HistoryConfig(path=tmp_path / "state" / "history.sqlite3", **hist),
                  path=tmp_path / "genai-tui.toml", base_dir=tmp_path)


@pytest.fixture(autouse=True)
def _state_home(tmp_path, monkeypatch):
    """Never the runner's own ~/.local/state; no recorder outlives its test."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    yield
    history.OBSERVERS.clear()


def recorder(cfg: Config) -> tuple[Stack, Recorder]:
    stack = Stack(cfg, monitors=False)
    rec = Recorder.attach(stack, face="dashboard")
    assert rec.ready.wait(5)
    return stack, rec


def kinds(store: EventStore, **kw) -> list[str]:
    return [e.kind for e in store.events(newest_first=False, **kw)]


# ---------------------------------------------------------------- the store


def test_store_is_wal_and_filters(tmp_path):
    cfg = config(tmp_path)
    store = EventStore.for_config(cfg)
    assert store.mode == "write", store.reason
    t = time.time()
    store.add([make_event("die", "exited with code 1", service="qwen", severity="warning",
                          ts=t - 30),
               make_event("finding_open", "qwen: exited", service="qwen", code="x",
                          severity="critical", ts=t - 20),
               make_event("probe", "probe refused → ok", service="flux", ts=t - 10)])
    with sqlite3.connect(cfg.history.path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [e.kind for e in store.events()] == ["probe", "finding_open", "die"]  # newest 1st
    assert kinds(store, service="qwen") == ["die", "finding_open"]
    assert kinds(store, kind="container") == ["die"]
    assert kinds(store, severity="warning") == ["die", "finding_open"]
    assert kinds(store, since=t - 15) == ["probe"]
    assert store.since("x", "qwen") == datetime.fromtimestamp(t - 20, UTC)
    store.close()


def test_retention_by_age_and_by_size(tmp_path):
    cfg = config(tmp_path, retention_days=1.0, max_mb=0.25)
    store = EventStore.for_config(cfg)
    now = time.time()
    store.add([make_event("die", "old", service="qwen", ts=now - 3 * 86400)])
    store.add([make_event("die", "x" * 200 + f" {i}", service="qwen", ts=now - 3600 + i * 0.1)
               for i in range(5000)])
    store.prune()
    assert store.used_bytes() <= 0.25 * 1024 * 1024
    left = store.events(limit=None)
    assert left and "old" not in {e.text for e in left}
    assert left[0].text.endswith(" 4999")  # the newest are kept
    assert len(left) < 5000
    store.close()
    assert os.path.getsize(cfg.history.path) < 1024 * 1024  # the file shrank back


def test_corrupt_file_is_reported_and_nothing_crashes(tmp_path):
    cfg = config(tmp_path)
    cfg.history.path.parent.mkdir(parents=True)
    cfg.history.path.write_bytes(b"this is not sqlite at all " * 200)
    store = EventStore.for_config(cfg)
    assert store.mode == "off"
    assert "not a database" in store.status and "move the file aside" in store.status
    assert store.add([make_event("die", "x")]) == 0 and store.events() == []
    # the recorder on it: changes still flow, nothing raises, the file is left alone
    stack, rec = recorder(cfg)
    stack.publish("containers", [ContainerInfo("qwen", "qwen", id="a", state="running")])
    stack.publish("containers", [ContainerInfo("qwen", "qwen", id="a", state="exited",
                                               exit_code=1)])
    assert rec.flush()
    assert rec.store.mode == "off"
    rec.close()
    assert cfg.history.path.read_bytes().startswith(b"this is not sqlite")


def test_two_writers_one_config(tmp_path):
    cfg = config(tmp_path)
    first = EventStore.for_config(cfg)
    second = EventStore.for_config(cfg)
    assert first.mode == "write"
    assert second.mode == "read"
    assert f"pid {os.getpid()}" in second.status and "only reads" in second.status
    first.add([make_event("die", "from the writer", service="qwen")])
    assert [e.text for e in second.events()] == ["from the writer"]  # reads the writer's
    assert second.add([make_event("die", "ignored")]) == 0
    first.close()
    third = EventStore.for_config(cfg)  # the lock went with the first
    assert third.mode == "write"
    third.close()
    second.close()


def test_second_dashboard_process_reads_and_says_why(tmp_path):
    """Two processes: the second cannot write and names the first's pid."""
    cfg = config(tmp_path)
    first = EventStore.for_config(cfg)
    first.add([make_event("die", "seen by both", service="qwen")])
    code = textwrap.dedent(f"""
        from pathlib import Path
        from genai_tui.engine.history import EventStore
        s = EventStore(Path({str(cfg.history.path)!r})).open(writer=True)
        print(s.mode, '|', s.status, '|', [e.text for e in s.events()])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT).stdout
    assert out.startswith("read |"), out
    assert f"pid {os.getpid()}" in out and "seen by both" in out
    first.close()


def test_kill_9_mid_write_keeps_every_commit(tmp_path):
    cfg = config(tmp_path)
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from genai_tui.engine.history import EventStore, make_event
        s = EventStore(Path({str(cfg.history.path)!r})).open(writer=True)
        assert s.mode == "write", s.reason
        n = 0
        while True:
            n += s.add([make_event("die", f"event {{n + i}}", service="qwen")
                        for i in range(50)])
            print(n, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    committed = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            committed = int(line)
            if committed >= 3000:
                break
        os.kill(proc.pid, signal.SIGKILL)  # mid-write: it never stops adding
    finally:
        proc.wait(30)
        proc.stdout.close()
    assert committed >= 3000
    store = EventStore.for_config(cfg)  # the dead writer's lock is gone with it
    assert store.mode == "write", store.reason
    assert store.count() >= committed
    texts = {e.text for e in store.events(limit=None)}
    assert {f"event {i}" for i in range(committed)} <= texts
    with sqlite3.connect(cfg.history.path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()


def test_read_only_state_dir_runs_without_history(tmp_path):
    """A state folder the dashboard cannot write: the recorder says history is off and
    the stack runs on. Really read-only: a read-only bind mount in a mount namespace of
    the child's own when the tests run as root (root ignores modes), else mode 0555."""
    import shutil

    state = tmp_path / "state"
    state.mkdir()
    code = textwrap.dedent(f"""
        from pathlib import Path
        from genai_tui.config import Config, HistoryConfig, ServiceConfig, TokensConfig
        from genai_tui.engine.live import Stack
        from genai_tui.engine.history import Recorder
        from genai_tui.model import ContainerInfo
        cfg = Config(services=(ServiceConfig("qwen", "http://127.0.0.1:1"),),
                     tokens=TokensConfig(state_dir=Path("/nonexistent")),
                     history=HistoryConfig(path=Path({str(state)!r}) / "h.sqlite3"))
        said = []
        stack = Stack(cfg, monitors=False)
        rec = Recorder.attach(stack, notify=said.append)
        rec.ready.wait(5)
        stack.publish("containers", [ContainerInfo("qwen", "qwen", state="running")])
        print("published", [c.state for c in stack.snapshot.containers])
        rec.flush()
        rec.close()
        print("said |", said)
    """)
    argv = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        if not shutil.which("unshare"):
            pytest.skip("running as root without unshare: no way to make a folder "
                        "read-only for this process")
        d = str(state)
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                f'mount --bind "{d}" "{d}" && mount -o remount,ro,bind "{d}" "{d}" '
                '&& exec "$0" "$@"', *argv]
    else:
        os.chmod(state, 0o555)
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)
    finally:
        os.chmod(state, 0o755)
    if os.geteuid() == 0 and "mount:" in res.stderr:
        pytest.skip(f"no read-only bind mount here: {res.stderr.strip()[:200]}")
    assert res.returncode == 0, res.stderr
    assert "published ['running']" in res.stdout  # the stack ran on
    assert "history off: cannot write" in res.stdout, res.stdout
    assert ("Read-only file system" in res.stdout or "Permission denied" in res.stdout)
    assert os.listdir(state) == []


# ---------------------------------------------------------------- the recorder


def test_recorder_turns_changes_into_events(tmp_path):
    cfg = config(tmp_path)
    stack, rec = recorder(cfg)
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    run = dict(id="c1", started_at=t0)
    stack.publish("containers", [ContainerInfo("qwen", "qwen", state="running", **run,
                                               health="healthy")])
    stack.publish("containers", [ContainerInfo("qwen", "qwen", state="running", **run,
                                               health="unhealthy")])
    # the monitor's provisional exited (old finished_at), then the inspect
    stack.publish("containers", [ContainerInfo("qwen", "qwen", state="exited", **run,
                                               exit_code=137, oom_killed=True)])
    died = datetime.now(UTC)
    stack.publish("containers", [ContainerInfo("qwen", "qwen", state="exited", **run,
                                               exit_code=137, oom_killed=True,
                                               finished_at=died)])
    time.sleep(0.01)
    stack.publish("containers", [ContainerInfo("qwen", "qwen", state="running", id="c1",
                                               started_at=datetime.now(UTC),
                                               restart_count=1)])
    stack.publish("probes", [ProbeResult("qwen", "u", "refused")])
    stack.publish("probes", [ProbeResult("qwen", "u", "ok", auth="enforced")])
    assert rec.flush()
    events = rec.store.events(newest_first=False, kind=None)
    by_kind = {e.kind: e for e in events}
    assert [e.kind for e in events if e.group == "container"] == ["health", "oom", "restart"]
    assert by_kind["oom"].text == "OOM killed (exit 137)"
    assert by_kind["oom"].severity == "critical"
    assert by_kind["restart"].text == "restarted by the engine (restart 1)"
    assert by_kind["health"].text == "health healthy → unhealthy"
    assert by_kind["probe"].text == "probe refused → ok (enforced)"
    rec.close()


def test_kill_signal_named_and_start_recorded(tmp_path):
    cfg = config(tmp_path)
    stack, rec = recorder(cfg)
    t0 = datetime.now(UTC) - timedelta(minutes=2)
    stack.publish("containers", [ContainerInfo("flux", "flux", id="f", state="running",
                                               started_at=t0)])
    stack.publish("containers", [ContainerInfo("flux", "flux", id="f", state="exited",
                                               started_at=t0, exit_code=137,
                                               finished_at=t0 + timedelta(seconds=30))])
    stack.publish("containers", [ContainerInfo("flux", "flux", id="g", state="running",
                                               started_at=t0 + timedelta(seconds=60))])
    stack.publish("containers", [ContainerInfo("flux", "flux")])  # removed
    assert rec.flush()
    events = [e for e in rec.store.events(newest_first=False) if e.group == "container"]
    assert [(e.kind, e.text) for e in events] == [
        ("die", "killed by SIGKILL (exit 137)"), ("start", "started"),
        ("removed", "container removed")]
    assert events[0].ts == pytest.approx((t0 + timedelta(seconds=30)).timestamp())
    assert events[0].data["signal"] == "SIGKILL"
    rec.close()


def test_findings_open_close_and_since_survive_a_restart(tmp_path):
    cfg = config(tmp_path)
    stack, rec = recorder(cfg)
    loop = Finding("restart_loop", Severity.CRITICAL, "qwen", "qwen: restart loop")
    drift = Finding("token_drift", Severity.WARNING, None, "token copies disagree")
    stack.publish("findings", [loop, drift])
    stack.publish("findings", [loop, drift])  # still open: no new event
    assert rec.flush()
    opened = rec.since("restart_loop", "qwen")
    assert opened is not None
    rec.close()
    # a new dashboard: the still-open loop is not news, its "since" is the first one's;
    # the drift was fixed meanwhile: closed at the first look
    stack2, rec2 = recorder(cfg)
    stack2.publish("findings", [loop])
    assert rec2.flush()
    assert rec2.since("restart_loop", "qwen") == opened
    assert rec2.store.since("restart_loop", "qwen") == opened
    # what the findings view and the containers table are handed: the first run's time
    [shown] = rec2.with_since([loop])
    assert shown.since == opened and shown.message == loop.message
    findings = [(e.kind, e.code) for e in rec2.store.events(newest_first=False)
                if e.group == "finding"]
    assert findings == [("finding_open", "restart_loop"), ("finding_open", "token_drift"),
                        ("finding_close", "token_drift")]
    stack2.publish("findings", [])
    assert rec2.flush()
    assert rec2.since("restart_loop", "qwen") is None
    assert rec2.store.since("restart_loop", "qwen") is None
    rec2.close()


def test_tokens_by_fingerprint_only_and_no_secret_stored(tmp_path):
    cfg = config(tmp_path)
    stack, rec = recorder(cfg)
    secret = make_hash()

    def report(consistent: bool) -> TokensReport:
        fps = {"fp:aaaa1111": ["secrets"]} if consistent else {
            "fp:aaaa1111": ["secrets"], "fp:bbbb2222": ["docker-secrets"]}
        return TokensReport(locations=[TokenLocationStatus("secrets", "/x", "hash_file")],
                            consistent=consistent, fingerprints=fps)

    stack.publish("tokens", report(True))
    stack.publish("tokens", report(False))
    stack.publish("tokens", report(True))
    # a message that quotes a hash (an OS error, an HTTP body) is stored redacted
    stack.publish("findings", [Finding("token_rejected", Severity.CRITICAL, "qwen",
                                       f"401 with {secret} on disk")])
    assert rec.flush()
    rec.close()
    store = EventStore.for_config(cfg, writer=False)
    toks = [e for e in store.events(newest_first=False) if e.group == "token"]
    assert [e.kind for e in toks] == ["token_drift", "token_consistent"]
    assert "fp:bbbb2222 in docker-secrets" in toks[0].text
    assert toks[0].data["fingerprints"] == {"fp:aaaa1111": ["secrets"],
                                            "fp:bbbb2222": ["docker-secrets"]}
    raw = b"".join(p.read_bytes() for p in cfg.history.path.parent.iterdir() if p.is_file())
    assert secret.encode() not in raw and b"$2b$" not in raw
    assert secret[7:29].encode() not in raw  # no prefix of it either
    assert any("401 with fp:" in e.text for e in store.events())
    store.close()


def test_vram_peaks(tmp_path):
    cfg = config(tmp_path)
    stack, rec = recorder(cfg)

    def gpu(used: float) -> GpuReport:
        return GpuReport(gpus=[GpuInfo(0, "RTX", memory_used_mb=used, memory_total_mb=24576,
                                       processes=[GpuProcess(1, used - 100, service="qwen")])])

    stack.publish("gpu", gpu(20000))
    stack.publish("gpu", gpu(23000))  # higher, but within PEAK_EVERY of the last one
    assert rec.flush()
    peaks = [e for e in rec.store.events() if e.kind == "vram_peak"]
    assert len(peaks) == 1
    assert peaks[0].text == "VRAM peak 19.5 of 24.0 GiB (81%) on GPU 0, most by qwen"
    assert peaks[0].service == "qwen"
    rec.close()


def test_actions_record_who_and_face(tmp_path, monkeypatch):
    cfg = config(tmp_path)
    monkeypatch.setattr(history, "who", lambda: "alice")
    # no recorder in this process: the CLI writes the file itself
    history.record_action(cfg, "restart_asked", "qwen", "restart asked")
    store = EventStore.for_config(cfg, writer=False)
    [e] = store.events()
    assert e.text == "restart asked (by alice from the CLI)" and e.data["face"] == "cli"
    store.close()
    # a dashboard runs: its recorder takes the action, stamped "dashboard"
    stack, rec = recorder(cfg)
    outcomes = actions.restart(cfg, ["qwen"])  # a real restart call (no such container)
    assert rec.flush()
    asked = [e for e in rec.store.events(newest_first=False) if e.kind == "restart_asked"]
    assert asked[-1].data == {"who": "alice", "ok": outcomes[0].ok, "face": "dashboard"}
    assert asked[-1].text.endswith("(by alice from the dashboard)")
    # a CLI run beside it: the file is the dashboard's; the CLI spools, the writer takes it
    assert history.write_direct(cfg, [make_event("unify", "unify (by alice from the CLI)")]) \
        == "spooled"
    deadline = time.monotonic() + 10
    while "unify" not in kinds(rec.store) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "unify" in kinds(rec.store)
    rec.close()


def test_history_cli_json_and_export(tmp_path, capsys, monkeypatch):
    toml = tmp_path / "genai-tui.toml"
    toml.write_text('[history]\npath = "state/h.sqlite3"\n[[services]]\nname = "qwen"\n'
                    'url = "http://127.0.0.1:1"\n')
    cfg = __import__("genai_tui.config", fromlist=["load_file"]).load_file(toml)
    store = EventStore.for_config(cfg)
    now = time.time()
    store.add([make_event("die", "old one", service="qwen", ts=now - 7200),
               make_event("oom", "OOM killed (exit 137)", service="qwen", ts=now - 60,
                          severity="critical"),
               make_event("probe", "probe ok → refused", service="flux", ts=now - 30)])
    store.close()
    assert cli.main(["history", "--config", str(toml), "--since", "1h", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [e["kind"] for e in doc["events"]] == ["oom", "probe"]  # oldest first
    assert doc["events"][0]["time"] == datetime.fromtimestamp(now - 60, UTC).isoformat()
    assert cli.main(["history", "--config", str(toml), "--service", "qwen"]) == 0
    out = capsys.readouterr().out
    assert "old one" in out and "OOM killed" in out and "flux" not in out
    dest = tmp_path / "incident.jsonl"
    assert cli.main(["history", "--config", str(toml), "--export", str(dest)]) == 0
    lines = [json.loads(x) for x in dest.read_text().splitlines()]
    assert [x["text"] for x in lines] == ["old one", "OOM killed (exit 137)",
                                          "probe ok → refused"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".incident")]
    # no history file: exit 3 with the reason
    (tmp_path / "state" / "h.sqlite3").unlink()
    assert cli.main(["history", "--config", str(toml)]) == 3
    assert "no history file" in capsys.readouterr().err


def test_kill_9_of_the_real_dashboard_then_reopen(tmp_path):
    """The real `genai-tui` dashboard in a terminal, SIGKILLed once its history holds
    what it saw: the next one takes over as writer and finds it all."""
    import pty

    toml = tmp_path / "genai-tui.toml"
    store_file = tmp_path / "state" / "h.sqlite3"
    toml.write_text(f'[history]\npath = "{store_file}"\n'
                    '[docker]\nhost = "unix:///nonexistent/docker.sock"\n'
                    '[[services]]\nname = "x"\nurl = "http://127.0.0.1:9"\n')
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100", LINES="30")
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execvpe(sys.executable, [sys.executable, "-m", "genai_tui", "--config",
                                    str(toml)], env)
    import select

    exited = False
    try:
        seen: list[str] = []
        out = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                while select.select([fd], [], [], 0)[0]:
                    out = (out + os.read(fd, 65536))[-4000:]  # keep the terminal drained
            if os.waitpid(pid, os.WNOHANG)[0]:
                exited = True
                pytest.fail("the dashboard exited on its own before the kill: "
                            + out.decode("utf-8", "replace")[-1500:])
            if store_file.exists():
                reader = EventStore(store_file).open(writer=False)
                seen = [e.kind for e in reader.events()]
                reader.close()
                if "finding_open" in seen:
                    break
            time.sleep(0.2)
        assert "session_start" in seen and "finding_open" in seen, seen
    finally:
        if not exited:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    store = EventStore(store_file).open(writer=True)
    assert store.mode == "write", store.reason  # the dead dashboard's lock went with it
    kinds_now = [e.kind for e in store.events(newest_first=False)]
    assert len(kinds_now) >= len(seen) and set(seen) <= set(kinds_now)  # nothing lost
    assert "docker_unreachable" in {e.code for e in store.events()
                                    if e.kind == "finding_open"}
    assert "session_end" not in kinds_now  # it never got to say goodbye
    with sqlite3.connect(store_file) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()


def test_a_file_locked_by_another_program_delays_writes_not_the_stack(tmp_path):
    """`sqlite3` in a shell holding a write transaction on the file: the recorder says
    so once, keeps the events, and writes them when the lock goes; the stack never
    waits for it."""
    cfg = config(tmp_path)
    stack, rec = recorder(cfg)
    said: list[str] = []
    rec._notify = said.append
    other = sqlite3.connect(cfg.history.path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")  # the write lock, held
    stack.publish("containers", [ContainerInfo("qwen", "qwen", id="a", state="running")])
    stack.publish("containers", [ContainerInfo("qwen", "qwen", id="a", state="exited",
                                               exit_code=3)])
    assert stack.snapshot.containers[0].state == "exited"  # the engine went on
    deadline = time.monotonic() + 20
    while not said and time.monotonic() < deadline:
        time.sleep(0.1)
    assert said == [f"history on, writes waiting: {cfg.history.path} is locked by another "
                    "program"]
    other.execute("ROLLBACK")
    other.close()
    deadline = time.monotonic() + 20
    while "die" not in kinds(rec.store) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [e.text for e in rec.store.events() if e.kind == "die"] == ["exited with code 3"]
    rec.close()


def test_job_failures_from_the_jobs_watch(tmp_path):
    from genai_tui.model import JobInfo, JobsReport, ServiceJobs

    cfg = config(tmp_path)
    stack, rec = recorder(cfg)
    old = JobInfo("0ld0ld0ld", state="error", error_type="KeyError")
    stack.publish("jobs", JobsReport([ServiceJobs("qwen", recent=[old])]))
    new = JobInfo("9f2c41d07a3b", state="error", error_type="OOM",
                  finished_at=datetime.now(UTC))
    ok = JobInfo("aaaa", state="success")
    stack.publish("jobs", JobsReport([ServiceJobs("qwen", recent=[new, ok, old])]))
    stack.publish("jobs", JobsReport([ServiceJobs("qwen", recent=[new, ok, old])]))
    assert rec.flush()
    failed = [e for e in rec.store.events() if e.kind == "job_failed"]
    assert [(e.service, e.text) for e in failed] == [("qwen", "job 9f2c41d0 failed: OOM")]
    assert failed[0].ts == pytest.approx(new.finished_at.timestamp())
    rec.close()


def test_the_exporter_records_history_for_headless_installs(tmp_path):
    """`genai-tui exporter` as a systemd service is often the only face running: it keeps
    the history (and runs the hooks); a dashboard opened beside it only reads."""
    import io
    import threading

    from genai_tui import exporter
    from tests.conftest import free_port

    cfg = config(tmp_path)
    stop = threading.Event()
    out, err = io.StringIO(), io.StringIO()
    t = threading.Thread(target=exporter.run, args=(cfg, f"127.0.0.1:{free_port()}"),
                         kwargs={"stop": stop, "out": out, "err": err}, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 20
        reader = None
        while time.monotonic() < deadline:
            reader = EventStore.for_config(cfg, writer=False)
            if reader.mode == "read" and any(
                    e.kind == "session_start" for e in reader.events()):
                break
            reader.close()
            reader = None
            time.sleep(0.2)
        assert reader is not None, err.getvalue()
        [start] = [e for e in reader.events() if e.kind == "session_start"]
        assert start.text.startswith("exporter started by ")
        reader.close()
    finally:
        stop.set()
        t.join(15)
    assert not t.is_alive()
