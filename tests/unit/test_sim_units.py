"""In-process tests of the simulator's building blocks (fast, no sockets)."""

from __future__ import annotations

import json
from email.message import Message
from pathlib import Path

import pytest

from genai_tui.sim.comfyui import ComfyApp, tqdm_bar
from genai_tui.sim.config import DEFAULT_BACKENDS, SimConfig, parse_args, parse_backends
from genai_tui.sim.console import Console
from genai_tui.sim.scenarios import build_flood_pool
from genai_tui.sim.web import Request, parse_target

HASH = "$2b$12$" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"


class Capture(Console):
    """Console that keeps output in memory."""

    def __init__(self, level: str = "INFO") -> None:
        super().__init__(fd=-1, level=level)
        self.out = bytearray()

    def write_bytes(self, data: bytes) -> None:
        self.out += data

    @property
    def text(self) -> str:
        return self.out.decode()


def make_request(path: str, headers: dict[str, str] | None = None, method: str = "GET") -> Request:
    msg = Message()
    for key, value in (headers or {}).items():
        msg[key] = value
    clean, query = parse_target(path)
    return Request(method=method, target=path, path=clean, query=query, headers=msg)


def boot_app(tmp_path: Path, content: str | None, **kwargs) -> tuple[ComfyApp, Capture]:
    path = tmp_path / "login" / "PASSWORD"
    if content is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode())
    console = Capture(kwargs.pop("level", "INFO"))
    app = ComfyApp(SimConfig(password_file=str(path), **kwargs), console)
    for item in app.boot():
        if item is not None:
            console.log(item[1], item[0])
    return app, console


def test_parse_args_env_fallback_and_flag_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_SCENARIO", "hang")
    monkeypatch.setenv("SIM_PORT", "9999")
    monkeypatch.setenv("SIM_DELAY", "2.5")
    cfg = parse_args([])
    assert (cfg.kind, cfg.scenario, cfg.port, cfg.delay, cfg.host) == (
        "comfyui",
        "hang",
        9999,
        2.5,
        "0.0.0.0",
    )
    cfg = parse_args(["--scenario", "healthy", "--port", "1234"])
    assert cfg.scenario == "healthy" and cfg.port == 1234
    monkeypatch.delenv("SIM_DELAY")
    monkeypatch.setenv("SIM_SCENARIO", "slow_start")
    assert parse_args([]).delay == 10.0
    assert parse_args(["--scenario", "crash"]).delay == 5.0
    assert parse_args(["--scenario", "wrong_port", "--port", "100"]).listen_port == 101


def test_parse_args_orchestrator_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("SIM_PORT", "SIM_SCENARIO", "SIM_BACKENDS"):
        monkeypatch.delenv(key, raising=False)
    cfg = parse_args(["--kind", "orchestrator"])
    assert cfg.port == 8090 and cfg.backends == list(DEFAULT_BACKENDS)
    assert not cfg.backends_explicit
    monkeypatch.setenv("SIM_SCENARIO", "bogus")
    with pytest.raises(SystemExit):
        parse_args([])


def test_parse_backends() -> None:
    assert parse_backends("a=http://h:1/x, http://h2:2 ,h3:3") == [
        ("a", "http://h:1/x"),
        ("h2:2", "http://h2:2"),
        ("h3:3", "http://h3:3"),
    ]


def test_tqdm_bar_format() -> None:
    assert tqdm_bar(0, 20, 0.0) == "  0%|          | 0/20 [00:00<?, ?it/s]"
    assert tqdm_bar(9, 20, 1.1).startswith(" 45%|████▌     | 9/20 [00:01<00:01,  8.18it/s]")
    assert tqdm_bar(20, 20, 2.0).startswith("100%|██████████| 20/20 [00:02<00:00")


def test_flood_pool_content() -> None:
    pool = build_flood_pool()
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in pool)
    assert any(b"\r" in line and b"it/s]" in line for line in pool)
    assert any(len(line) >= 10_000 for line in pool)
    assert any(b"\x1b[" in line for line in pool)
    assert any(line == b"got prompt\n" for line in pool)


def test_crlf_password_file_is_stripped(tmp_path: Path) -> None:
    app, console = boot_app(tmp_path, f"{HASH}\r\nadmin\r\n")
    assert f"For direct API calls, use token={HASH}\n" in console.text
    resp = app.handle(make_request("/prompt", {"Authorization": f"Bearer {HASH}"}))
    assert resp.status == 200
    assert b"Welcome back, admin!" in app.handle(make_request("/login")).body


def test_empty_password_file_behaves_like_real_node(tmp_path: Path) -> None:
    # The file exists, so the node logs an empty token line (not the ERROR) and keeps
    # re-reading it per request while the token is "".
    app, console = boot_app(tmp_path, "")
    assert "For direct API calls, use token=\n" in console.text
    assert "Please set up your password" not in console.text
    assert app.handle(make_request("/prompt?token=")).status == 200
    assert console.text.count("For direct API calls, use token=") == 2
    body = app.handle(make_request("/login")).body
    assert b"Please also set a username." in body and b"first login" not in body


def test_verbose_warning_hides_token_line(tmp_path: Path) -> None:
    _, console = boot_app(tmp_path, f"{HASH}\nadmin", level="WARNING")
    assert "For direct API calls" not in console.text
    assert "Starting server" not in console.text
    _, console = boot_app(tmp_path / "other", None, level="WARNING")
    assert "Please set up your password before use." in console.text


def test_comfy_root_is_configurable(tmp_path: Path) -> None:
    app, console = boot_app(tmp_path, f"{HASH}\nadmin", comfy_root="/root/ComfyUI")
    assert "   0.1 seconds: /root/ComfyUI/custom_nodes/ComfyUI-Login\n" in console.text


def test_history_max_items_returns_latest(tmp_path: Path) -> None:
    app, _ = boot_app(tmp_path, f"{HASH}\nadmin")
    for i in range(3):
        app.history[f"id{i}"] = {"prompt": [], "outputs": {}, "status": {}, "meta": {}}
    auth = {"Authorization": f"Bearer {HASH}"}
    body = json.loads(app.handle(make_request("/history?max_items=2", auth)).body)
    assert list(body) == ["id1", "id2"]
    assert len(json.loads(app.handle(make_request("/api/history", auth)).body)) == 3
