"""The standard-library engine client (`sources/docker_light.py`) against a real HTTP
server on a unix socket that answers like the Engine API — and like a hostile or broken
one: an error is one clean line, a stream ends at once when closed from another thread,
frame headers never reach the text. (Agreement with docker-py on a real engine:
tests/integration/test_docker_source.py.)"""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
import time

import pytest

from genai_tui.config import Config, DockerConfig, ServiceConfig
from genai_tui.sources.docker import DockerSource
from genai_tui.sources.docker_light import (
    EngineError,
    LightClient,
    NotFound,
    is_not_found,
    socket_path,
)
from genai_tui.sources.logs import (
    ContainerGone,
    LightLogSource,
    LineAssembler,
    SourceUnavailable,
    Target,
)

CID = "a" * 64
BIG_STOP = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_a) -> None:  # quiet
        pass

    def address_string(self) -> str:  # a unix socket has no host
        return "local"

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        path = self.path
        if path == "/version":
            self._send(200, b'{"Version": "27.0.0-test"}')
        elif path.startswith("/containers/json"):
            self._send(200, json.dumps([{"Id": CID, "Names": ["/x"]}, "junk"]).encode())
        elif path == f"/containers/{CID}/json":
            self._send(200, json.dumps({"Id": CID, "Config": {"Tty": False}}).encode())
        elif path.startswith(f"/containers/{CID}/logs") and "follow=1" in path:
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.docker.raw-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for n, text in enumerate((b"first line\n", b"second \x1b[2Jline\n")):
                payload = b"2026-12-02T10:00:0%d.000000001Z " % n + text
                frame = bytes([1, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload
                self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
                self.wfile.flush()
            BIG_STOP.wait(30)  # a quiet container: the stream stays open
        elif path.startswith(f"/containers/{CID}/logs"):
            frames = b""
            for stream, text in ((1, b"hello "), (2, b"world\n"), (1, b"token line\n")):
                frames += bytes([stream, 0, 0, 0]) + len(text).to_bytes(4, "big") + text
            self._send(200, frames, "application/vnd.docker.raw-stream")
        elif path.startswith("/containers/gone/"):
            self._send(404, b'{"message": "No such container: gone"}')
        elif path == "/containers/evil/json":
            self._send(500, json.dumps({"message": "boom \x1b]0;owned\x07\x1b[2J\nline two"})
                       .encode())
        elif path == "/containers/notjson/json":
            self._send(200, b"<html>proxy login</html>", "text/html")
        elif path == "/containers/list/json":
            self._send(200, b"[1, 2]")
        elif path.startswith("/events"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for line in (b'{"Type": "container", "Action": "start"}\n', b"garbage\n",
                         b'["not", "an", "event"]\n', b'{"Type": "container", "Action": "die"}\n'):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            BIG_STOP.wait(30)  # then silence, the connection left open: an idle engine
        else:
            self._send(404, b'{"message": "page not found"}')


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def engine(tmp_path):
    path = tmp_path / "engine.sock"
    server = Server(str(path), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    BIG_STOP.clear()
    yield LightClient(str(path), timeout=5)
    BIG_STOP.set()
    server.shutdown()
    server.server_close()


def test_reads_version_listing_and_inspect(engine):
    assert engine.version()["Version"] == "27.0.0-test"
    assert [c["Id"] for c in engine.api.containers(all=True)] == [CID]  # "junk" dropped
    assert engine.inspect_container(CID)["Id"] == CID


def test_a_missing_container_is_not_found_with_the_engines_words(engine):
    with pytest.raises(NotFound) as err:
        engine.inspect_container("gone")
    assert is_not_found(err.value) and "No such container: gone" in str(err.value)


def test_a_hostile_error_message_is_one_clean_line(engine):
    with pytest.raises(EngineError) as err:
        engine.inspect_container("evil")
    text = str(err.value)
    assert "\x1b" not in text and "\x07" not in text and "\n" not in text
    assert "boom" in text and "line two" in text and err.value.status_code == 500


def test_an_answer_that_is_not_the_api_is_said_so(engine):
    with pytest.raises(EngineError, match="not JSON"):
        engine.inspect_container("notjson")
    with pytest.raises(EngineError, match="not what the API gives"):
        engine.inspect_container("list")


def test_logs_come_without_the_frame_headers(engine):
    chunks = engine.logs(CID, stream=True, follow=False, since=1)
    try:
        assert b"".join(chunks) == b"hello world\ntoken line\n"
    finally:
        chunks.close()


def test_events_skip_garbage_and_close_ends_a_blocked_read_at_once(engine):
    stream = engine.events(decode=True, since=1, filters={"type": "container"})
    got: list[str] = []
    done = threading.Event()

    def read() -> None:
        for event in stream:
            got.append(event["Action"])
        done.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert got == ["start", "die"]  # the garbage and the non-object lines are skipped
    assert not done.is_set()  # waiting on an idle engine, as the monitor does
    stream.close()
    assert done.wait(5), "close() did not end the blocked read"


def test_the_socket_rules_follow_docker_py(tmp_path):
    assert socket_path(DockerConfig(host="unix:///run/x.sock"), env={}) == "/run/x.sock"
    for remote in ("tcp://10.0.0.5:2376", "ssh://admin@gpu-a", "npipe:////./pipe/x"):
        assert socket_path(DockerConfig(host=remote), env={}) is None
        assert socket_path(DockerConfig(), env={"DOCKER_HOST": remote}) is None
    assert socket_path(DockerConfig(), env={"DOCKER_HOST": "unix:///y.sock"}) == "/y.sock"
    # [docker] host wins over DOCKER_HOST, as with docker-py's base_url
    assert socket_path(DockerConfig(host="unix:///c.sock"),
                       env={"DOCKER_HOST": "tcp://h:1"}) == "/c.sock"
    cli = tmp_path / "cli"
    cli.mkdir()
    env = {"DOCKER_CONFIG": str(cli)}
    assert socket_path(DockerConfig(), env=env) == "/var/run/docker.sock"  # no config.json
    (cli / "config.json").write_text('{"currentContext": "default"}')
    assert socket_path(DockerConfig(), env=env) == "/var/run/docker.sock"
    (cli / "config.json").write_text('{"currentContext": "gpu-box"}')
    assert socket_path(DockerConfig(), env=env) is None  # docker-py reads the context
    (cli / "config.json").write_text("{broken")
    assert socket_path(DockerConfig(), env=env) is None  # docker-py decides
    assert socket_path(DockerConfig(), env={**env, "DOCKER_CONTEXT": "gpu-box"}) is None


def test_the_source_reads_through_it_and_names_a_dead_socket(tmp_path):
    where = tmp_path / "none.sock"
    src = DockerSource(Config(services=(), docker=DockerConfig(host=f"unix://{where}",
                                                               timeout=2)))
    assert isinstance(src.reader(), LightClient)
    status = src.status()
    assert not status.reachable
    assert status.error == f"Docker engine unreachable: No such file or directory " \
                           f"(at unix://{where})"


def test_a_followed_log_streams_in_chunks_and_close_ends_a_blocked_read(engine):
    source = LightLogSource("x", engine, idle_timeout=30)
    target = source.locate()
    assert target is not None and target.id == CID and not target.tty
    stream = source.open(target, tail=10, since_ns=None)
    asm = LineAssembler(stream.framed)
    lines: list[bytes] = []
    done = threading.Event()

    def read() -> None:
        try:
            for chunk in stream:
                lines.extend(raw for _ts, raw, _s in asm.feed(chunk))
        except (OSError, ValueError):
            pass
        done.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 10
    while len(lines) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lines == [b"first line", b"second \x1b[2Jline"]  # cleaned later, by the follower
    assert not done.is_set()
    t0 = time.monotonic()
    stream.close()
    assert done.wait(5) and time.monotonic() - t0 < 1.5, "close() did not end the read"


def test_a_log_source_names_a_removed_container_and_a_dead_engine(engine, tmp_path):
    source = LightLogSource("x", engine)
    with pytest.raises(ContainerGone):
        source.open(Target("gone", "gone", running=True), tail=10, since_ns=None)
    assert source.inspect("gone") is None
    dead = LightLogSource("x", LightClient(str(tmp_path / "nothing.sock"), timeout=1))
    with pytest.raises(SourceUnavailable) as err:
        dead.locate()
    assert "Traceback" not in str(err.value) and str(err.value)


RID = "b" * 64


class JustRenamed(Handler):
    """What Docker 20.10 answered a few ms after a `rename` event (seen on the CI engine):
    the listing still carries the old name beside the new one; the inspect has only the
    new one."""

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/containers/json"):
            self._send(200, json.dumps([{"Id": RID, "Names": ["/h4-new", "/comfyui-qwen"],
                                         "Labels": {}}]).encode())
        elif self.path == f"/containers/{RID}/json":
            self._send(200, json.dumps({"Id": RID, "Name": "/h4-new",
                                        "State": {"Status": "running", "Running": True},
                                        "Config": {"Labels": {}}}).encode())
        else:
            self._send(404, b'{"message": "page not found"}')


def test_a_name_a_rename_took_away_is_not_believed_from_a_stale_listing(tmp_path):
    """Renamed away: the service is missing, has nothing to restart and no log, though
    the listing still shows the old name; a service configured with the new name has
    it."""
    path = tmp_path / "engine.sock"
    server = Server(str(path), JustRenamed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    qwen = ServiceConfig("comfyui-qwen", "http://127.0.0.1:1", container="comfyui-qwen")
    other = ServiceConfig("flux", "http://127.0.0.1:1", container="h4-new")
    try:
        src = DockerSource(Config(services=(qwen, other),
                                  docker=DockerConfig(host=f"unix://{path}", timeout=5)))
        by_service = {i.service: i for i in src.list_stack()}
        assert by_service["comfyui-qwen"].missing
        assert by_service["flux"].id == RID and by_service["flux"].running
        cid, reason = src.resolve(qwen)
        assert cid is None and "no container 'comfyui-qwen'" in reason
        assert src.find(qwen) is None
        # an event read late names the container by its old name: inspected, it is not
        # the service's any more
        assert src.inspect_service(qwen, RID).missing
        assert src.inspect_service(other, RID).id == RID
        # nor is its log shown as the service's
        client = LightClient(str(path), timeout=5)
        assert LightLogSource("comfyui-qwen", client).locate() is None
        assert LightLogSource("h4-new", client).locate().id == RID
    finally:
        server.shutdown()
        server.server_close()
