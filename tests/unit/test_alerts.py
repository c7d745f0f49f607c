"""Issue #18, alert hooks: a real webhook receiver (`http.server` on 127.0.0.1 in a
thread), real commands run by the hook, a storm of 100 findings through a real live
`Stack` and recorder, hooks that fail and time out (their failures are events), and no
secret in any payload."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from genai_tui import config as configmod
from genai_tui.config import AlertConfig, Config, HistoryConfig, ServiceConfig, TokensConfig
from genai_tui.engine import history
from genai_tui.engine.alerts import AlertManager
from genai_tui.engine.history import EventStore, Recorder
from genai_tui.engine.live import Stack
from genai_tui.model import Finding, Severity
from tests.conftest import make_hash


class Receiver:
    """A webhook endpoint: records each POST (headers and JSON body)."""

    def __init__(self, status: int = 200, delay: float = 0.0,
                 gate: threading.Event | None = None) -> None:
        self.posts: list[dict] = []
        self.status = status
        self.delay = delay
        self.gate = gate  # when set: each request waits for it (a hook that hangs)
        self.arrived = threading.Event()
        me = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                me.arrived.set()
                if me.gate is not None:
                    me.gate.wait(30)
                if me.delay:
                    time.sleep(me.delay)
                me.posts.append({"type": self.headers.get("Content-Type"),
                                 "body": json.loads(body)})
                self.send_response(me.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(**kw) -> Receiver:
        r = Receiver(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture(autouse=True)
def _state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    yield
    history.OBSERVERS.clear()


def stack_with(tmp_path: Path, *alerts: AlertConfig) -> tuple[Stack, Recorder]:
    cfg = Config(services=(ServiceConfig("qwen", "http://127.0.0.1:1"),),
                 tokens=TokensConfig(state_dir=tmp_path / "st"),
                 history=HistoryConfig(path=tmp_path / "h.sqlite3"), alerts=alerts)
    stack = Stack(cfg, monitors=False)
    rec = Recorder.attach(stack, face="dashboard")
    assert rec.ready.wait(5)
    return stack, rec


def alert_events(rec: Recorder) -> list[history.Event]:
    assert rec.alerts is not None and rec.alerts.wait_idle(20)
    assert rec.flush()
    return [e for e in rec.store.events(newest_first=False) if e.group == "alert"]


def test_webhook_posts_json_on_open_and_close(tmp_path, receiver):
    r = receiver()
    stack, rec = stack_with(tmp_path, AlertConfig("ops", webhook=r.url, severity="warning"))
    secret = make_hash()
    loop = Finding("restart_loop", Severity.CRITICAL, "qwen",
                   f"qwen: restart loop (PASSWORD {secret})")
    stack.publish("findings", [loop])
    stack.publish("findings", [])
    events = alert_events(rec)
    rec.close()
    assert [p["body"]["state"] for p in r.posts] == ["open", "close"]
    body = r.posts[0]["body"]
    assert r.posts[0]["type"] == "application/json"
    assert set(body) == {"source", "code", "severity", "service", "message", "state", "time",
                         "host"}
    assert (body["code"], body["severity"], body["service"]) == ("restart_loop", "critical",
                                                                 "qwen")
    # never a secret: the hash is its fingerprint in the message, nowhere else either
    raw = json.dumps(r.posts)
    assert secret not in raw and "$2b$" not in raw and secret[7:29] not in raw
    assert "fp:" in body["message"]
    assert [e.kind for e in events] == ["alert_sent", "alert_sent"]


def test_severity_and_state_choose_what_is_sent(tmp_path, receiver):
    r = receiver()
    stack, rec = stack_with(tmp_path, AlertConfig("crit-open", webhook=r.url,
                                                  severity="critical", on=("open",)))
    stack.publish("findings", [Finding("port_unreachable", Severity.WARNING, "qwen", "w"),
                               Finding("container_exited", Severity.CRITICAL, "qwen", "c")])
    stack.publish("findings", [])
    alert_events(rec)
    rec.close()
    assert [(p["body"]["code"], p["body"]["state"]) for p in r.posts] == [
        ("container_exited", "open")]


def test_command_hook_writes_a_file(tmp_path):
    out = tmp_path / "alerts.jsonl"
    script = ("import sys; open(sys.argv[1], 'a').write(sys.stdin.read() + '\\n')")
    stack, rec = stack_with(tmp_path, AlertConfig(
        "file", command=(sys.executable, "-c", script, str(out)), severity="warning"))
    stack.publish("findings", [Finding("token_drift", Severity.WARNING, None, "drift")])
    events = alert_events(rec)
    rec.close()
    [doc] = [json.loads(x) for x in out.read_text().splitlines()]
    assert (doc["code"], doc["state"], doc["service"]) == ("token_drift", "open", None)
    assert [e.kind for e in events] == ["alert_sent"]


def test_storm_of_100_findings_is_rate_limited_and_deduplicated(tmp_path, receiver):
    r = receiver()
    stack, rec = stack_with(tmp_path, AlertConfig("ops", webhook=r.url, severity="warning",
                                                  per_minute=5, on=("open",)))
    storm = [Finding(f"code_{i}", Severity.CRITICAL, "qwen", f"finding {i}")
             for i in range(100)]
    stack.publish("findings", storm)
    stack.publish("findings", [])
    stack.publish("findings", storm[:3])  # the same three again: duplicates, not sent
    events = alert_events(rec)
    rec.close()
    assert len(r.posts) == 5
    suppressed = [e for e in events if e.kind == "alert_suppressed"]
    assert sum(e.data["count"] for e in suppressed) == 95
    assert "held back by the rate limit (5/min)" in suppressed[0].text


def test_failing_and_slow_hooks_become_events(tmp_path, receiver):
    slow = receiver(delay=3.0)
    broken = receiver(status=500)
    stack, rec = stack_with(
        tmp_path,
        AlertConfig("slow", webhook=slow.url, severity="warning", timeout=0.5),
        AlertConfig("broken", webhook=broken.url, severity="warning"),
        AlertConfig("exit-2", command=(sys.executable, "-c", "import sys; sys.exit(2)"),
                    severity="warning"),
        AlertConfig("sleepy", command=(sys.executable, "-c", "import time; time.sleep(30)"),
                    severity="warning", timeout=0.5),
        AlertConfig("nowhere", webhook="http://127.0.0.1:9/", severity="warning"),
        AlertConfig("no-such", command=("/nonexistent/alert-cmd",), severity="warning"))
    stack.publish("findings", [Finding("container_exited", Severity.CRITICAL, "qwen", "x")])
    events = alert_events(rec)
    rec.close()
    failed = {e.data["hook"]: e.data["error"] for e in events if e.kind == "alert_failed"}
    assert failed == {
        "slow": "timed out after 0.5 s", "broken": "HTTP 500", "exit-2": "exit status 2",
        "sleepy": "timed out after 0.5 s",
        "nowhere": failed["nowhere"], "no-such": failed["no-such"]}
    assert failed["nowhere"].startswith("cannot reach the webhook")
    assert failed["no-such"].startswith("cannot run /nonexistent/alert-cmd")


def test_alert_worker_is_off_the_engine_loop(tmp_path, receiver):
    """A hook that hangs never holds up the stack: while the receiver holds the POST,
    the engine goes on publishing and recording."""
    gate = threading.Event()
    hanging = receiver(gate=gate)
    stack, rec = stack_with(tmp_path, AlertConfig("hangs", webhook=hanging.url,
                                                  severity="warning", timeout=20))
    stack.publish("findings", [Finding("container_exited", Severity.CRITICAL, "qwen", "x")])
    assert hanging.arrived.wait(10)  # the hook is now stuck in the receiver
    stack.publish("findings", [])  # the engine is not: the close is derived and recorded
    assert rec.flush()
    assert "finding_close" in [e.kind for e in rec.store.events()]
    assert hanging.posts == []
    gate.set()
    alert_events(rec)
    rec.close()
    assert [p["body"]["state"] for p in hanging.posts] == ["open", "close"]


def test_manager_closes_its_thread(receiver):
    r = receiver()
    m = AlertManager([AlertConfig("x", webhook=r.url, severity="info")], host="h")
    m.start()
    m.finding("a", "warning", None, "m", "open")
    assert m.wait_idle(10)
    thread = m._thread
    m.close()
    assert thread is not None and not thread.is_alive()
    assert r.posts[0]["body"]["host"] == "h"


def test_alerts_config_section(tmp_path):
    path = tmp_path / "genai-tui.toml"
    path.write_text('[[alerts]]\nname = "ops"\nwebhook = "https://hooks.example/x"\n'
                    'severity = "warning"\non = ["open"]\nper_minute = 3\n'
                    '[[alerts]]\ncommand = ["/usr/local/bin/page", "--now"]\n')
    cfg = configmod.load_file(path)
    assert cfg.alerts[0] == AlertConfig("ops", webhook="https://hooks.example/x",
                                        severity="warning", on=("open",), per_minute=3)
    assert cfg.alerts[1].command == ("/usr/local/bin/page", "--now")
    for body, where in (('[[alerts]]\nname = "x"\n', "alerts[0]: expected exactly one"),
                        ('[[alerts]]\nwebhook = "ftp://x"\n', "alerts[0].webhook"),
                        ('[[alerts]]\ncommand = ["x"]\non = ["opened"]\n', "alerts[0].on[0]"),
                        ('[[alerts]]\ncommand = ["x"]\nseverity = "high"\n',
                         "alerts[0].severity")):
        path.write_text(body)
        with pytest.raises(configmod.ConfigError) as err:
            configmod.load_file(path)
        assert where in str(err.value)


def test_store_never_holds_what_the_hook_was_given(tmp_path, receiver):
    """The failure event quotes the hook's stderr: cleaned and redacted too."""
    secret = make_hash()
    script = f"import sys; sys.stderr.write('bad token {secret}\\x1b[2J'); sys.exit(1)"
    stack, rec = stack_with(tmp_path, AlertConfig("leaky", command=(sys.executable, "-c",
                                                                     script),
                                                  severity="warning"))
    stack.publish("findings", [Finding("container_exited", Severity.CRITICAL, "qwen", "x")])
    [failed] = [e for e in alert_events(rec) if e.kind == "alert_failed"]
    rec.close()
    assert secret not in failed.text and "\x1b" not in failed.text
    assert "exit status 1: bad token fp:" in failed.text
    store = EventStore.for_config(stack.config, writer=False)
    assert secret.encode() not in Path(store.path).read_bytes()
    store.close()


def test_two_dashboards_on_one_config_alert_once(tmp_path, receiver):
    """The second dashboard only reads the history: the writer alone runs the hooks, so
    one finding is one POST, not one per open dashboard."""
    r = receiver()
    hook = AlertConfig("ops", webhook=r.url, severity="warning", on=("open",))
    first_stack, first = stack_with(tmp_path, hook)
    second_stack, second = stack_with(tmp_path, hook)
    assert (first.store.mode, second.store.mode) == ("write", "read")
    drift = [Finding("token_drift", Severity.WARNING, None, "drift")]
    first_stack.publish("findings", drift)
    second_stack.publish("findings", drift)
    alert_events(first)
    assert second.alerts is None or second.alerts.wait_idle(20)
    second.close()
    first.close()
    assert len(r.posts) == 1
