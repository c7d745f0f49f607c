"""Log following against real containers: the simulator, plus tiny Python scripts in the
same registry-free image when a test needs exact output (a numbered sequence, hostile
bytes)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator

import pytest

from genai_tui import simdocker
from genai_tui.config import Config, LogConfig, ServiceConfig
from genai_tui.secret import fingerprint
from genai_tui.sources.docker_light import light_client
from genai_tui.sources.logs import (
    META,
    DockerLogSource,
    LightLogSource,
    LogFollower,
    LogHub,
    LogLine,
    make_docker_client,
    parse_ts,
)
from genai_tui.sources.logtext import Redactor, is_clean
from tests.conftest import TEST_OWNER, make_hash, wait_for

# one write per line (os.write) so a kill never leaves half a line in the log
COUNTER = (
    "import os, sys, time\n"
    "tag = os.environ.get('TAG', 'run')\n"
    "n = 0\n"
    "while True:\n"
    "    os.write(1, f'{tag} seq {n}\\n'.encode())\n"
    "    n += 1\n"
    "    time.sleep(float(os.environ.get('EVERY', '0.002')))\n"
)


@pytest.fixture
def py_container(docker_client) -> Iterator[Callable[..., object]]:
    """Run a Python script in the simulator image (host Python bind-mounted)."""
    made = []

    def start(script: str, *, name: str | None = None, tty: bool = False,
              env: dict[str, str] | None = None, stop_signal: str = "SIGKILL"):
        c = docker_client.containers.run(
            simdocker.ensure_image(docker_client),
            [simdocker.python_in_container(), "-u", "-c", script],
            name=name or simdocker.unique("gtl"), detach=True, tty=tty,
            volumes=simdocker.host_python_mounts(), environment=env or {},
            labels={simdocker.OWNER_LABEL: TEST_OWNER}, stop_signal=stop_signal)
        made.append(c)
        return c

    yield start
    for c in made:
        try:
            c.remove(force=True)
        except Exception:
            pass


#: the client the follower() helper reads with: every test here runs with both
_CLIENT = ["light"]


@pytest.fixture(autouse=True, params=["light", "docker-py"])
def engine_client(request) -> Iterator[str]:
    """The standard-library client (the dashboard's on a local socket) and docker-py (a
    TCP, TLS or SSH engine) must follow a log the same way."""
    if request.param == "light" and light_client(Config(services=()).docker) is None:
        pytest.skip("the engine is not on a local unix socket")
    _CLIENT[0] = request.param
    yield request.param


def follower(name: str, **kw) -> LogFollower:
    kw.setdefault("poll_interval", 0.5)
    kw.setdefault("removed_poll", 0.5)
    idle = kw.pop("idle_timeout", 60.0)
    docker_cfg = Config(services=()).docker
    light = light_client(docker_cfg)
    source: LightLogSource | DockerLogSource
    if _CLIENT[0] == "light" and light is not None:
        source = LightLogSource(name, light, idle_timeout=idle)
    else:
        source = DockerLogSource(name, lambda: make_docker_client(docker_cfg), idle_timeout=idle)
    return LogFollower(kw.pop("service", "svc"), source, **kw).start()


def make_hub(cfg: Config) -> LogHub:
    """The hub as the dashboard makes it, or made to use docker-py."""
    if _CLIENT[0] == "light":
        return LogHub(cfg, secrets=lambda: [])
    return LogHub(cfg, secrets=lambda: [], make_client=lambda: make_docker_client(cfg.docker))


def collect(f: LogFollower, into: list[LogLine]) -> list[LogLine]:
    into.extend(f.drain())
    return into


def truth(container) -> list[tuple[int, str]]:
    """What Docker itself stored, as (ts, text)."""
    out = []
    for raw in container.logs(timestamps=True).decode().splitlines():
        ts, _, text = raw.partition(" ")
        out.append((parse_ts(ts), text))
    return out


def test_follow_simulator_startup_redacts_token_and_reports_event(sim_container, login_dir):
    h = make_hash()
    c = sim_container(login_dir=login_dir(h))
    f = follower(c.name, service="qwen")
    try:
        got: list[LogLine] = []
        wait_for(lambda: any("To see the GUI" in ln.text for ln in collect(f, got)))
        token_lines = [ln for ln in got if "For direct API calls" in ln.text]
        assert len(token_lines) == 1
        assert token_lines[0].kind == "login"
        assert token_lines[0].text.endswith(f"[redacted {fingerprint(h)}]")
        assert all(h[7:20] not in ln.text for ln in got)
        assert f.state == "following" and f.status_text == "following"
        events = f.drain_events()
        assert [e.kind for e in events if e.kind == "token"] == ["token"]
        assert events[0].fingerprint == fingerprint(h)
        assert events[0].service == "qwen"
    finally:
        f.close()


def test_starts_with_the_last_n_lines_then_follows(py_container):
    script = ("import os,time\nfor i in range(500): os.write(1, f'old {i}\\n'.encode())\n"
              "time.sleep(1.5)\nfor i in range(5): os.write(1, f'new {i}\\n'.encode())\n"
              "time.sleep(60)\n")
    c = py_container(script)
    wait_for(lambda: b"old 499" in c.logs())
    f = follower(c.name, tail=50)
    try:
        got: list[LogLine] = []
        wait_for(lambda: len(collect(f, got)) >= 50)
        assert [ln.text for ln in got[:50]] == [f"old {i}" for i in range(450, 500)]
        wait_for(lambda: any(ln.text == "new 4" for ln in collect(f, got)))
        assert [ln.text for ln in got] == ([f"old {i}" for i in range(450, 500)]
                                           + [f"new {i}" for i in range(5)])
    finally:
        f.close()


def test_restart_during_follow_has_no_duplicate_and_no_gap(py_container, docker_client):
    c = py_container(COUNTER)
    wait_for(lambda: b"seq 20" in c.logs())
    f = follower(c.name, tail=10_000, buffer_lines=100_000)
    try:
        got: list[LogLine] = []
        wait_for(lambda: len(collect(f, got)) > 100)
        c.restart(timeout=0)
        wait_for(lambda: any(ln.text == "container restarted" or "container started" in ln.text
                             for ln in collect(f, got)), timeout=20)
        time.sleep(0.3)
        f.notify_started()  # as the app does on the `start` event: harmless when following
        c.restart(timeout=0)
        wait_for(lambda: sum(ln.kind == META for ln in collect(f, got)) >= 2, timeout=20)
        time.sleep(0.5)
        c.kill()
        wait_for(lambda: f.state == "stopped", timeout=20)
        time.sleep(0.5)
        collect(f, got)
    finally:
        f.close()
    mine = [(ln.ts, ln.text) for ln in got if ln.kind != META]
    expected = truth(c)
    assert len(set(mine)) == len(mine), "duplicate lines"
    assert mine == expected, "the followed lines differ from what Docker stored"
    # the sequence restarted twice (three runs), each run counted from 0 without holes
    runs = [i for i, (_, text) in enumerate(mine) if text == "run seq 0"]
    assert len(runs) == 3


def test_stopped_container_then_start_resumes_without_duplicates(py_container):
    c = py_container(COUNTER, env={"EVERY": "0.01"})
    wait_for(lambda: b"seq 10" in c.logs())
    f = follower(c.name, poll_interval=30.0)  # only notify_started can wake it quickly
    try:
        got: list[LogLine] = []
        wait_for(lambda: len(collect(f, got)) > 10)
        c.kill()
        wait_for(lambda: f.state == "stopped")
        # no restart policy: Docker will not start it again, and the status says so
        assert f.status_text == "container stopped; restart policy: no — stays stopped"
        assert any("stays stopped" in ln.text for ln in collect(f, got) if ln.kind == META)
        c.start()
        f.notify_started()
        wait_for(lambda: f.state == "following" and any(
            "container started" in ln.text for ln in collect(f, got)), timeout=10)
        n_runs = lambda: sum(ln.text == "run seq 5" for ln in collect(f, got))  # noqa: E731
        wait_for(lambda: n_runs() == 2)
    finally:
        f.close()
    c.kill()
    mine = [(ln.ts, ln.text) for ln in got if ln.kind != META]
    expected = truth(c)
    i = expected.index(mine[0])
    assert mine == expected[i:i + len(mine)]


def test_removed_container_is_reported_and_a_new_one_picked_up(py_container):
    name = simdocker.unique("gtl-removed")
    first = py_container(COUNTER, name=name, env={"TAG": "first", "EVERY": "0.05"})
    f = follower(name)
    try:
        got: list[LogLine] = []
        wait_for(lambda: any(ln.text.startswith("first seq") for ln in collect(f, got)))
        first.remove(force=True)
        wait_for(lambda: f.state == "removed", timeout=20)
        assert f.status_text == f"container removed: {name}"
        assert any("removed" in ln.text and ln.kind == META for ln in collect(f, got))
        second = py_container(COUNTER, name=name, env={"TAG": "second", "EVERY": "0.05"})
        wait_for(lambda: any(ln.text.startswith("second seq") for ln in collect(f, got)),
                 timeout=20)
        assert f.target is not None and f.target.id == second.id
        assert f.state == "following"
        assert any(ln.kind == META and "new container" in ln.text for ln in got)
    finally:
        f.close()


def test_missing_container_says_so(docker_client):
    # needs an engine to answer "no such container" (docker_client: skipped without one)
    f = follower("gtl-never-created-" + TEST_OWNER)
    try:
        wait_for(lambda: f.state == "missing")
        assert f.status_text.startswith("no container named gtl-never-created")
    finally:
        f.close()


def test_merged_view_orders_services_by_time(py_container):
    a = py_container(COUNTER, env={"TAG": "alpha", "EVERY": "0.01"})
    b = py_container(COUNTER, env={"TAG": "beta", "EVERY": "0.01"})
    cfg = Config(services=(ServiceConfig("alpha", "http://127.0.0.1:1", container=a.name),
                           ServiceConfig("beta", "http://127.0.0.1:2", container=b.name)))
    hub = make_hub(cfg)
    try:
        merged = hub.merged()
        wait_for(lambda: all(f.total > 20 for f in merged.followers))
        lines = merged.snapshot()
        assert {ln.service for ln in lines} == {"alpha", "beta"}
        assert [ln.ts for ln in lines] == sorted(ln.ts for ln in lines)
        assert all(ln.text.startswith(ln.service + " seq") for ln in lines)
        time.sleep(0.3)
        more = merged.drain()
        assert more and {ln.service for ln in more} == {"alpha", "beta"}
        assert more[0].ts >= lines[-1].ts
        assert hub.notify_started(a.name) and not hub.notify_started("nope")
    finally:
        t = time.monotonic()
        hub.close()
        assert time.monotonic() - t < 2.0
    assert all(not f.alive for f in merged.followers)


def test_flood_keeps_the_buffer_bounded(sim_container):
    c = sim_container(scenario="log_flood", publish=False,
                      extra_args=["--lines-per-second", "20000", "--duration", "4"])
    f = follower(c.name, buffer_lines=2000, tail=0)
    try:
        wait_for(lambda: f.total > 30_000, timeout=30)
        snap = f.snapshot()
        assert len(snap) == 2000
        assert len(f.drain()) <= 2000
        assert all(is_clean(ln.text) for ln in snap)
        assert all(len(ln.text.encode()) <= 4096 + 40 for ln in snap)
        assert any("[cut " in ln.text for ln in f.snapshot()) or f.total < 40_000
    finally:
        f.close()


def test_hostile_container_output_is_stored_clean_and_redacted(py_container):
    h = make_hash()
    raw = "configured-raw-password-77"
    hf = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567"
    payload: list[bytes | str] = [
        b"\x1b[31mred\x1b[0m \x1b]52;c;ZXZpbA==\x07 \x1b]8;;http://evil\x1b\\link"
        b"\x1b]8;;\x1b\\ \x1bP1$r\x1b\\ \xc2\x9b2J \x9b \x1b[?1049h \x07\x08\x7f"
        b" \xe2\x80\xae bidi\n",
        b"bad utf8 \xff\xfe\xc3\x28 end\n",
        "BIG",  # built in the container: too large for a command line
        "STORM",
        f"For direct API calls, use token={h}\n".encode(),
        f"Authorization: Bearer {h[7:]}\n".encode(),
        f"GET /ws?clientId=1&token={h[7:30]} 101\n".encode(),
        f"login with {raw}\n".encode(),
        f"HF_TOKEN={hf}\n".encode(),
        b"done\n",
    ]
    encoded = [p if isinstance(p, str) else base64.b64encode(p).decode() for p in payload]
    script = (
        "import base64, os, time\n"
        "made = {'BIG': b'Y' * (1 << 20) + b'\\n',\n"
        "        'STORM': b''.join(b'\\r%d%%' % i for i in range(100000)) + b'\\n'}\n"
        f"for b in {encoded!r}:\n"
        "    os.write(1, made.get(b) or base64.b64decode(b))\n"
        "time.sleep(60)\n"
    )
    c = py_container(script)
    f = follower(c.name, redactor=Redactor([h, raw]))
    try:
        got: list[LogLine] = []
        wait_for(lambda: any(ln.text == "done" for ln in collect(f, got)))
    finally:
        f.close()
    texts = [ln.text for ln in got]
    assert len(texts) == len(payload)
    assert all(is_clean(t) for t in texts)
    assert texts[0] == "red  link   \ufffd    bidi"  # U+009B ate "2J" like a terminal would
    assert texts[1] == "bad utf8 \ufffd\ufffd\ufffd( end"
    assert texts[2].startswith("Y" * 4096) and texts[2].endswith(f"[cut {(1 << 20) - 4096} bytes]")
    assert texts[3] == "99999%"
    blob = "\n".join(texts)
    for secret in (h, h[7:], h[7:30], raw, hf):
        assert not any(secret[i:i + 8] in blob for i in range(len(secret) - 7))
    assert f"[redacted {fingerprint(h)}]" in blob


def test_tty_container_lines_are_split_and_trimmed(py_container):
    c = py_container("import os,time\nfor i in range(3): print(f'tty line {i}')\n"
                     "time.sleep(60)\n", tty=True)
    f = follower(c.name)
    try:
        got: list[LogLine] = []
        wait_for(lambda: len(collect(f, got)) >= 3)
        assert [ln.text for ln in got] == ["tty line 0", "tty line 1", "tty line 2"]
    finally:
        f.close()


def test_close_returns_quickly_while_blocked_on_a_quiet_stream(py_container):
    c = py_container("import time\nprint('one line', flush=True)\ntime.sleep(120)\n")
    f = follower(c.name)
    wait_for(lambda: f.total >= 1)
    time.sleep(0.3)  # now blocked in the read
    t = time.monotonic()
    f.close()
    assert time.monotonic() - t < 1.5
    assert not f.alive


def test_hub_follows_config_with_custom_log_settings(py_container):
    c = py_container(COUNTER, env={"EVERY": "0.001"})
    cfg = Config(services=(ServiceConfig("svc", "http://127.0.0.1:1", container=c.name),),
                 logs=LogConfig(tail=5, buffer_lines=300, max_line_bytes=100))
    hub = make_hub(cfg)
    try:
        f = hub.follower("svc")
        assert isinstance(f.source, LightLogSource if _CLIENT[0] == "light" else DockerLogSource)
        wait_for(lambda: f.total > 1000)
        assert len(f.snapshot()) == 300
    finally:
        hub.close()


def test_quiet_stream_is_reopened_after_the_idle_timeout_without_duplicates(py_container):
    # the idle timeout is the watchdog for follow streams that hang (docker-py #3084)
    c = py_container(COUNTER, env={"EVERY": "0.7"})
    f = follower(c.name, idle_timeout=0.3)
    try:
        got: list[LogLine] = []
        wait_for(lambda: sum(ln.text.startswith("run seq") for ln in collect(f, got)) >= 6)
        c.kill()
        wait_for(lambda: f.state == "stopped")
        collect(f, got)
    finally:
        f.close()
    mine = [(ln.ts, ln.text) for ln in got if ln.kind != META]
    assert mine == truth(c)


def test_output_without_final_newline_is_its_own_line_across_restarts(py_container):
    c = py_container("import os, time\nos.write(1, b'run start\\n')\ntime.sleep(0.3)\n"
                     "os.write(2, b'last words without newline')\n")
    f = follower(c.name)
    try:
        got: list[LogLine] = []
        wait_for(lambda: f.state == "stopped")
        c.start()
        f.notify_started()
        wait_for(lambda: sum(ln.text == "last words without newline"
                             for ln in collect(f, got)) == 2)
        wait_for(lambda: f.state == "stopped")
        time.sleep(0.3)
        collect(f, got)
    finally:
        f.close()
    assert [ln.text for ln in got if ln.kind != META] == [
        "run start", "last words without newline"] * 2
