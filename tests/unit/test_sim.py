"""Black-box tests of the stdlib simulator (``python -m genai_tui.sim``).

Each test runs the simulator as a real subprocess on a free port and talks to it with
http.client or raw sockets, because what matters is the wire behaviour genai-tui sees.
"""

from __future__ import annotations

import ast
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SIM_DIR = REPO / "genai_tui" / "sim"
HASH = "$2b$12$" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"
HASH2 = "$2b$12$" + "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkjihgfedcba9"
TOKEN_RE = re.compile(r"For direct API calls, use token=(\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53})")
FIRST_LOGIN = "For your first login, please enter a new username and password."
ERROR_LINE = "Please set up your password before use."
AUTH_JSON = {"error": "Authentication required."}

assert len(HASH) == 60 and len(HASH2) == 60


# --------------------------------------------------------------------------- helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_pair() -> int:
    """A port p such that p and p+1 are both free (for ``wrong_port``)."""
    for _ in range(50):
        p = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def write_password(directory: Path, token: str = HASH, user: str = "admin") -> Path:
    path = directory / "login" / "PASSWORD"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{token}\n{user}")
    return path


def can_connect(port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class Sim:
    """A simulator subprocess with its merged stdout/stderr captured by a thread."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SIM_")}
        full_env["PYTHONPATH"] = str(REPO)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "genai_tui.sim", *args],
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.buf = bytearray()
        self.newlines = 0
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            with self.lock:
                self.buf += chunk
                self.newlines += chunk.count(b"\n")

    @property
    def text(self) -> str:
        with self.lock:
            return self.buf.decode("utf-8", "replace")

    def lines(self) -> list[str]:
        return self.text.split("\n")

    def wait_for(self, needle: str, timeout: float = 5.0, count: int = 1) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.text.count(needle) >= count:
                return True
            if self.proc.poll() is not None:
                time.sleep(0.05)
                return self.text.count(needle) >= count
            time.sleep(0.02)
        return False

    def wait_listening(self, port: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"simulator exited early:\n{self.text}")
            if can_connect(port, 0.2):
                return
            time.sleep(0.03)
        raise AssertionError(f"port {port} never opened:\n{self.text}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        finally:
            self.reader.join(timeout=2)
            if self.proc.stdout:
                self.proc.stdout.close()


def request(
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: bytes | None = None,
    timeout: float = 3.0,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def bearer(token: str = HASH) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    """Factory: ``start(args, cwd=..., env=..., listen=True)`` -> (Sim, port)."""
    sims: list[Sim] = []

    def _start(
        args: list[str],
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        listen: bool = True,
        port: int | None = None,
    ) -> tuple[Sim, int]:
        port = port or free_port()
        sim = Sim(["--port", str(port), "--host", "127.0.0.1", *args], cwd or tmp_path, env)
        sims.append(sim)
        if listen:
            sim.wait_listening(port)
        return sim, port

    try:
        yield _start
    finally:
        for sim in sims:
            sim.stop()


@pytest.fixture(scope="module")
def comfy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sim, int]]:
    """One healthy ComfyUI+Login simulator shared by the read-only auth tests."""
    cwd = tmp_path_factory.mktemp("comfy")
    write_password(cwd)
    port = free_port()
    sim = Sim(["--port", str(port), "--host", "127.0.0.1"], cwd)
    try:
        sim.wait_listening(port)
        assert sim.wait_for("To see the GUI go to:")
        yield sim, port
    finally:
        sim.stop()


# --------------------------------------------------------------------------- comfyui
def test_startup_log_order_and_token_line(comfy: tuple[Sim, int]) -> None:
    sim, port = comfy
    lines = sim.lines()
    expected = [
        "Checkpoint files will always be loaded safely.",
        "Total VRAM 24576 MB, total RAM 64000 MB",
        "pytorch version: 2.5.1+cu124",
        "Set vram state to: NORMAL_VRAM",
        "Device: cuda:0 NVIDIA GeForce RTX 3090 : cudaMallocAsync",
        "Using pytorch attention",
        "Python version: ",
        "ComfyUI version: 0.3.64",
        "ComfyUI frontend version: 1.28.6",
        "[Prompt Server] web root: ",
        f"For direct API calls, use token={HASH}",
        "Import times for custom nodes:",
        "   0.1 seconds: /workspace/ComfyUI/custom_nodes/ComfyUI-Login",
        "Starting server",
        f"To see the GUI go to: http://127.0.0.1:{port}",
    ]
    positions = []
    for needle in expected:
        idx = next((i for i, line in enumerate(lines) if line.startswith(needle)), None)
        assert idx is not None, f"missing {needle!r} in:\n{sim.text}"
        positions.append(idx)
    assert positions == sorted(positions)
    # Blank line between "Starting server" and the GUI line, like the real server.
    gui = positions[-1]
    assert lines[gui - 1] == "" and lines[gui - 2] == "Starting server"
    assert TOKEN_RE.search(sim.text).group(1) == HASH  # type: ignore[union-attr]
    assert ERROR_LINE not in sim.text


def test_auth_matrix(comfy: tuple[Sim, int]) -> None:
    sim, port = comfy
    status, headers, body = request(port, "/prompt")
    assert status == 401 and json.loads(body) == AUTH_JSON
    assert headers["content-type"].startswith("application/json")
    status, _, body = request(port, "/prompt", {"Accept": "application/json"})
    assert status == 401 and json.loads(body) == AUTH_JSON

    status, headers, _ = request(port, "/", {"Accept": "text/html,application/xhtml+xml"})
    assert status == 302 and headers["location"] == "/login"

    status, _, body = request(port, "/prompt", bearer())
    assert status == 200 and json.loads(body) == {"exec_info": {"queue_remaining": 0}}
    status, _, body = request(port, f"/prompt?token={HASH}")
    assert status == 200 and json.loads(body)["exec_info"]["queue_remaining"] == 0

    for bad in (
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"bearer {HASH}"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
    ):
        status, _, body = request(port, "/prompt", bad)
        assert status == 401 and json.loads(body) == AUTH_JSON, bad
    # The raw password-ish or an empty query token never matches a real hash.
    assert request(port, "/prompt?token=")[0] == 401
    # A wrong header still falls through to the query token, as in the real middleware.
    assert request(port, f"/prompt?token={HASH}", {"Authorization": "Bearer nope"})[0] == 200


def test_malformed_authorization_gives_500_and_logs(comfy: tuple[Sim, int]) -> None:
    sim, port = comfy
    before = sim.text.count("Error handling request")
    for value in ("Bearer", f"Bearer {HASH} extra", "Bearer a b"):
        status, headers, body = request(port, "/prompt", {"Authorization": value})
        assert status == 500, value
        assert body.startswith(b"500 Internal Server Error")
        assert headers["content-type"].startswith("text/plain")
    assert sim.wait_for("Error handling request", count=before + 3)
    assert "ValueError: not enough values to unpack (expected 2, got 1)" in sim.text
    assert "ValueError: too many values to unpack (expected 2)" in sim.text


def test_exempt_routes_and_api_aliases(comfy: tuple[Sim, int]) -> None:
    _, port = comfy
    status, headers, body = request(port, "/login")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"<title>ComfyUI Login</title>" in body and b"Welcome back, admin!" in body
    assert FIRST_LOGIN.encode() not in body
    # Exempt suffixes reach the router without auth: unknown files are a plain 404.
    for path in ("/scripts/app.js", "/style.css", "/x.css.map", "/favicon.ico"):
        assert request(port, path)[0] == 404, path
    # /api/login is NOT exempt (only the exact path /login is).
    assert request(port, "/api/login")[0] == 401
    assert request(port, "/api/login", bearer())[0] == 200
    # Every route also lives under /api/.
    assert request(port, "/api/prompt")[0] == 401
    status, _, body = request(port, "/api/prompt", bearer())
    assert status == 200 and "exec_info" in json.loads(body)
    status, _, body = request(port, "/api/system_stats", bearer())
    assert status == 200 and json.loads(body)["system"]["comfyui_version"] == "0.3.64"
    # Unknown paths: auth first (401), then aiohttp's 404.
    assert request(port, "/nope")[0] == 401
    status, _, body = request(port, "/nope", bearer())
    assert status == 404 and body == b"404: Not Found"


def test_api_payloads(comfy: tuple[Sim, int]) -> None:
    _, port = comfy
    stats = json.loads(request(port, "/system_stats", bearer())[2])
    system = stats["system"]
    for key in (
        "os",
        "ram_total",
        "ram_free",
        "comfyui_version",
        "python_version",
        "pytorch_version",
        "embedded_python",
        "argv",
    ):
        assert key in system, key
    assert system["embedded_python"] is False and system["pytorch_version"] == "2.5.1+cu124"
    assert len(stats["devices"]) == 1
    dev = stats["devices"][0]
    assert dev["name"] == "cuda:0 NVIDIA GeForce RTX 3090 : cudaMallocAsync"
    assert dev["type"] == "cuda" and dev["index"] == 0
    assert dev["vram_total"] == 25769803776
    assert 0 < dev["vram_free"] <= dev["vram_total"]
    assert 0 <= dev["torch_vram_free"] <= dev["torch_vram_total"]

    queue = json.loads(request(port, "/queue", bearer())[2])
    assert set(queue) == {"queue_running", "queue_pending"}
    assert json.loads(request(port, "/object_info", bearer())[2]) == {}
    assert json.loads(request(port, "/object_info/Nope", bearer())[2]) == {}
    status, headers, body = request(port, "/", bearer())
    assert status == 200 and b"<title>ComfyUI</title>" in body
    assert headers["cache-control"] == "no-cache"
    # HEAD works on GET routes, method mismatch follows aiohttp (405 / static 404).
    status, _, body = request(port, "/prompt", bearer(), method="HEAD")
    assert status == 200 and body == b""
    assert request(port, "/system_stats", bearer(), method="POST", body=b"{}")[0] == 405
    assert request(port, "/free", bearer())[0] == 404
    # OPTIONS is answered by ComfyUI's origin middleware before Login runs.
    assert request(port, "/prompt", method="OPTIONS")[0] == 200


def test_job_lifecycle_history_and_free(comfy: tuple[Sim, int]) -> None:
    sim, port = comfy
    done_before = sim.text.count("Prompt executed in")
    payload = {"prompt": {"9": {"class_type": "SaveImage", "inputs": {}}}, "client_id": "t"}
    status, _, body = request(
        port, "/prompt", bearer(), method="POST", body=json.dumps(payload).encode()
    )
    assert status == 200
    prompt_id = json.loads(body)["prompt_id"]
    assert sim.wait_for("got prompt")
    queue = json.loads(request(port, "/queue", bearer())[2])
    queued = queue["queue_running"] + queue["queue_pending"]
    assert [item[1] for item in queued] == [prompt_id]
    assert len(queued[0]) == 5  # [number, prompt_id, prompt, extra_data, outputs]
    assert sim.wait_for("Prompt executed in", count=done_before + 1)
    assert re.search(r"Prompt executed in \d+\.\d\d seconds", sim.text)
    assert "\r100%|██████████| 20/20" in sim.text

    history = json.loads(request(port, "/history?max_items=5", bearer())[2])
    entry = history[prompt_id]
    assert set(entry) == {"prompt", "outputs", "status", "meta"}
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert entry["status"]["messages"][0][0] == "execution_start"
    assert json.loads(request(port, "/history?max_items=0", bearer())[2]) == {}
    assert request(port, "/history?max_items=abc", bearer())[0] == 500

    loaded = json.loads(request(port, "/system_stats", bearer())[2])["devices"][0]
    assert loaded["torch_vram_total"] > 0
    body = json.dumps({"unload_models": True, "free_memory": True}).encode()
    assert request(port, "/free", bearer(), method="POST", body=body)[0] == 200
    assert sim.wait_for("1 models unloaded.")
    freed = json.loads(request(port, "/system_stats", bearer())[2])["devices"][0]
    assert freed["torch_vram_total"] == 0 and freed["vram_free"] > loaded["vram_free"]

    assert request(port, "/prompt", bearer(), method="POST", body=b"{}")[0] == 400
    assert request(port, "/prompt", method="POST", body=b"{}")[0] == 401


def test_origin_check_and_websocket(comfy: tuple[Sim, int]) -> None:
    sim, port = comfy
    headers = {**bearer(), "Origin": "http://evil.example"}
    assert request(port, "/prompt", headers)[0] == 403
    assert sim.wait_for("WARNING: request with non matching host and origin")
    same = {**bearer(), "Origin": f"http://127.0.0.1:{port}"}
    assert request(port, "/prompt", same)[0] == 200

    ws_headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    assert request(port, "/ws?clientId=abc", ws_headers)[0] == 401
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        head = "".join(f"{k}: {v}\r\n" for k, v in ws_headers.items())
        s.sendall(f"GET /ws?clientId=abc&token={HASH} HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 2:
            data += s.recv(4096)
        head_bytes, frame = data.split(b"\r\n\r\n", 1)
        assert head_bytes.startswith(b"HTTP/1.1 101")
        assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head_bytes
        size = frame[1] & 0x7F
        offset = 2
        if size == 126:
            size = int.from_bytes(frame[2:4], "big")
            offset = 4
        while len(frame) < offset + size:
            frame += s.recv(4096)
        message = json.loads(frame[offset : offset + size])
        assert message["type"] == "status" and message["data"]["sid"] == "abc"
        assert isinstance(message["data"]["status"]["exec_info"]["queue_remaining"], int)


def test_token_read_once(start, tmp_path: Path) -> None:
    path = write_password(tmp_path)
    sim, port = start([])
    path.write_text(f"{HASH2}\nadmin")
    assert request(port, "/prompt", bearer(HASH))[0] == 200
    assert request(port, "/prompt", bearer(HASH2))[0] == 401
    assert sim.text.count("For direct API calls, use token=") == 1


def test_first_login_state(start, tmp_path: Path) -> None:
    sim, port = start([])
    assert sim.wait_for("To see the GUI go to:")
    assert "Password directory does not exists, creating..." in sim.text
    assert (tmp_path / "login").is_dir()
    assert sim.text.count(ERROR_LINE) == 1
    assert "For direct API calls" not in sim.text

    status, _, body = request(port, "/login")
    assert status == 200 and FIRST_LOGIN.encode() in body
    assert sim.text.count(ERROR_LINE) == 1  # exempt routes do not re-read the file
    assert request(port, "/prompt")[0] == 401
    assert sim.wait_for(ERROR_LINE, count=2)  # re-read (and re-logged) per request
    assert request(port, "/prompt?token=")[0] == 200  # empty token matches ""
    assert sim.wait_for(ERROR_LINE, count=3)
    assert request(port, "/prompt", {"Authorization": "Bearer x"})[0] == 401

    # The setup form "succeeds" (no file is written: no bcrypt in the stdlib).
    form = b"username=admin&password=secret"
    status, headers, _ = request(
        port,
        "/login",
        {"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
        body=form,
    )
    assert status == 302 and headers["location"] == "/"
    cookie = headers["set-cookie"].split(";", 1)[0]
    assert request(port, "/prompt", {"Cookie": cookie})[0] == 200

    # A PASSWORD appearing later is picked up on the next request (token was "").
    write_password(tmp_path)
    assert request(port, "/prompt")[0] == 401
    assert sim.wait_for(f"For direct API calls, use token={HASH}")
    assert request(port, "/prompt", bearer())[0] == 200
    assert b"Welcome back, admin!" in request(port, "/login")[2]
    status, headers, _ = request(
        port,
        "/login",
        {"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
        body=form,
    )
    assert status == 302 and headers["location"] == "/login?wrong_password=1"


def test_no_password_scenario_ignores_file(start, tmp_path: Path) -> None:
    write_password(tmp_path)
    sim, port = start(["--scenario", "no_password"])
    assert sim.wait_for(ERROR_LINE)
    assert FIRST_LOGIN.encode() in request(port, "/login")[2]
    assert request(port, "/prompt", bearer())[0] == 401
    assert "For direct API calls" not in sim.text


def test_login_missing(start, tmp_path: Path) -> None:
    write_password(tmp_path)
    sim, port = start([], env={"SIM_SCENARIO": "login_missing"})
    assert sim.wait_for("To see the GUI go to:")
    status, _, body = request(port, "/prompt")
    assert status == 200 and json.loads(body) == {"exec_info": {"queue_remaining": 0}}
    assert request(port, "/system_stats")[0] == 200
    assert request(port, "/login")[0] == 404
    assert request(port, "/api/login")[0] == 404
    text = sim.text
    assert "   0.0 seconds (IMPORT FAILED): /workspace/ComfyUI/custom_nodes/ComfyUI-Login" in text
    assert (
        "Cannot import /workspace/ComfyUI/custom_nodes/ComfyUI-Login module for custom nodes: "
        "No module named 'bcrypt'" in text
    )
    assert "For direct API calls" not in text and ERROR_LINE not in text


def test_cli_flag_beats_env_and_cors_origin(start, tmp_path: Path) -> None:
    write_password(tmp_path)
    origin = "http://ui.example"
    sim, port = start(
        ["--scenario", "healthy", "--enable-cors-header", origin],
        env={"SIM_SCENARIO": "login_missing"},
    )
    # Flag wins over env: Login is loaded, so no token means 401.
    assert request(port, "/prompt")[0] == 401
    # CORS caveat: the token only counts with the matching Origin.
    assert request(port, "/prompt", bearer())[0] == 401
    status, headers, _ = request(port, "/prompt", {**bearer(), "Origin": origin})
    assert status == 200 and headers["access-control-allow-origin"] == origin


# --------------------------------------------------------------------------- scenarios
def test_empty_reply(start) -> None:
    sim, port = start(["--scenario", "empty_reply"])
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        request(port, "/prompt")
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(b"GET /prompt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(1024) == b""


def test_hang(start) -> None:
    sim, port = start(["--scenario", "hang"])
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        request(port, "/prompt", timeout=0.5)
    assert time.monotonic() - t0 < 2.0
    # Many held connections do not stop new accepts.
    held = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(20)]
    try:
        assert can_connect(port)
    finally:
        for s in held:
            s.close()


def test_not_http(start) -> None:
    sim, port = start(["--scenario", "not_http"])
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        assert s.recv(256).startswith(b"SSH-2.0-OpenSSH")
    with pytest.raises(http.client.BadStatusLine):
        request(port, "/prompt")


def test_wrong_port(start, tmp_path: Path) -> None:
    port = free_port_pair()
    sim, _ = start(["--scenario", "wrong_port"], port=port, listen=False)
    sim.wait_listening(port + 1)
    assert not can_connect(port)
    assert request(port + 1, "/prompt")[0] == 401
    assert sim.wait_for(f"To see the GUI go to: http://127.0.0.1:{port + 1}")


def test_slow_start(start) -> None:
    t0 = time.monotonic()
    sim, port = start(["--scenario", "slow_start", "--delay", "1.5"], listen=False)
    assert sim.wait_for("Checkpoint files will always be loaded safely.", timeout=3)
    assert not can_connect(port)
    sim.wait_listening(port, timeout=6)
    assert time.monotonic() - t0 >= 1.3
    assert request(port, "/login")[0] == 200


def test_no_listen(start) -> None:
    sim, port = start(["--scenario", "no_listen"], listen=False)
    assert sim.wait_for("Starting server")
    time.sleep(0.3)
    assert sim.proc.poll() is None
    assert not can_connect(port)
    assert "To see the GUI" not in sim.text


def test_crash_exit_code(start) -> None:
    sim, port = start(["--scenario", "crash", "--delay", "0.5"])
    assert sim.proc.wait(timeout=6) == 1
    assert sim.wait_for("RuntimeError: CUDA error")
    assert "Traceback (most recent call last):" in sim.text


def test_sigterm_stops_cleanly_with_periodic_jobs(start) -> None:
    sim, port = start(["--jobs-every", "0.1"])
    assert sim.wait_for("Prompt executed in", timeout=6)
    sim.proc.send_signal(signal.SIGTERM)
    assert sim.proc.wait(timeout=3) == 0
    assert sim.wait_for("Stopped server")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_oom_allocates(start) -> None:
    sim, port = start(["--scenario", "oom", "--oom-cap-mb", "96", "--oom-step-mb", "16"])
    assert sim.wait_for("Requested to load")
    assert sim.wait_for("Memory cap reached", timeout=5)
    status = Path(f"/proc/{sim.proc.pid}/status").read_text()
    rss_kb = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    assert rss_kb > 80 * 1024
    assert request(port, "/login")[0] == 200


def test_log_flood_rate(start) -> None:
    sim, port = start(["--scenario", "log_flood", "--lines-per-second", "20000"])
    assert sim.wait_for("To see the GUI go to:")
    time.sleep(0.2)
    n0, t0 = sim.newlines, time.monotonic()
    time.sleep(1.0)
    produced = (sim.newlines - n0) / (time.monotonic() - t0)
    assert produced >= 10000, produced
    assert request(port, "/login", timeout=3)[0] == 200  # still serving
    text = sim.text
    assert "\r" in text and "%|" in text and "it/s]" in text
    assert max(len(line) for line in text.split("\n")) >= 10000


def test_log_flood_duration_stops(start) -> None:
    sim, port = start(
        ["--scenario", "log_flood", "--lines-per-second", "2000", "--duration", "0.3"]
    )
    time.sleep(0.8)
    n0 = sim.newlines
    time.sleep(0.4)
    assert sim.newlines == n0
    assert n0 >= 300
    assert sim.proc.poll() is None


# --------------------------------------------------------------------------- orchestrator
def test_orchestrator_endpoints_and_probes(start, comfy: tuple[Sim, int]) -> None:
    _, up_port = comfy
    down_port = free_port()
    backends = f"comfyui-qwen=http://127.0.0.1:{up_port}/,flux=http://127.0.0.1:{down_port}"
    sim, port = start(["--kind", "orchestrator", "--backends", backends, "--check-interval", "0.2"])
    deadline = time.monotonic() + 6
    while True:
        status = json.loads(request(port, "/status")[2])
        if status["summary"]["unknown_services"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status["summary"] == {
        "total_services": 2,
        "healthy_services": 1,
        "unhealthy_services": 1,
        "unknown_services": 0,
    }
    flux = status["services"]["flux"]
    assert flux["status"] == "unhealthy" and flux["error_count"] >= 1 and flux["last_error"]
    assert status["services"]["comfyui-qwen"]["status"] == "healthy"  # 401 counts as up
    assert set(status["services"]["comfyui-qwen"]) == {
        "status",
        "last_check",
        "error_count",
        "last_error",
    }
    assert "orchestrator" in status

    code, headers, body = request(port, "/health")
    health = json.loads(body)
    assert code == 200 and health["status"] == "healthy"
    assert health["service"] == "GenAI-Orchestrator" and "timestamp" in health
    assert health["services"] == {"comfyui-qwen": "healthy", "flux": "unhealthy"}
    services = json.loads(request(port, "/services")[2])
    assert set(services["services"]) == {"comfyui-qwen", "flux"}
    code, _, body = request(port, "/nope")
    assert code == 404 and json.loads(body) == {"error": "Endpoint not found"}
    assert request(port, "/health", method="HEAD")[0] == 501  # plain http.server
    assert sim.wait_for("Service flux indisponible")
    assert '"GET /health HTTP/1.1" 200' in sim.text  # http.server access log


def test_orchestrator_health_shape_without_backends(start) -> None:
    sim, port = start(["--kind", "orchestrator"])
    health = json.loads(request(port, "/health")[2])
    assert set(health) == {"status", "service", "timestamp"}
    status = json.loads(request(port, "/status")[2])
    assert status["summary"]["total_services"] == 4


def test_orchestrator_scenario_empty_reply(start) -> None:
    sim, port = start(["--kind", "orchestrator", "--scenario", "empty_reply"])
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        request(port, "/health")


def test_stub(start) -> None:
    sim, port = start(["--kind", "stub", "--name", "flux-1-dev"])
    health = json.loads(request(port, "/health")[2])
    assert health["status"] == "healthy" and health["service"] == "flux-1-dev"
    assert "gpu_memory" in json.loads(request(port, "/system_stats")[2])
    assert request(port, "/")[0] == 404
    assert request(port, "/", method="HEAD")[0] == 200


# --------------------------------------------------------------------------- stdlib only
def test_sim_imports_only_stdlib_ast() -> None:
    allowed = set(sys.stdlib_module_names) | {"__future__"}
    for path in sorted(SIM_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def test_sim_imports_without_site_packages() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import genai_tui.sim.server, genai_tui.sim.__init__; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] not in "
        "sys.stdlib_module_names and m.split('.')[0] not in ('genai_tui', '__main__')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-E", "-c", code, str(REPO)],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=str(SIM_DIR.parent.parent),
    )
    assert result.returncode == 0, result.stdout + result.stderr
