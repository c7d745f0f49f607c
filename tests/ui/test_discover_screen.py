"""The discovery modal through Textual's Pilot (issue #20): the proposal with its
evidence and TOML, "write config" writing a file the config loader accepts, read-only mode
refusing, and an unreachable engine named. The screen is pushed directly; the proposal is
made by `discover.analyse` from inspect documents and real files in a temporary folder."""

from __future__ import annotations

import stat
from pathlib import Path

from textual.app import App

from genai_tui.config import load_file
from genai_tui.secret import fingerprint
from genai_tui.sources import discover
from genai_tui.ui.screens.discover import DiscoverScreen
from tests.conftest import make_hash
from tests.ui.helpers import screen_text, wait_until

SIZE = (120, 40)


class Host(App):
    def __init__(self, screen: DiscoverScreen) -> None:
        super().__init__()
        self.modal = screen

    def on_mount(self) -> None:
        self.push_screen(self.modal)


def proposal(root: Path) -> tuple[discover.Proposal, str, Path]:
    h = make_hash("ui")
    login = root / "login"
    login.mkdir(parents=True)
    (login / "PASSWORD").write_text(f"{h}\nadmin")
    doc = {"Id": "1" * 64, "Name": "/stack-comfyui-1", "State": {"Status": "running"},
           "Config": {"Image": "python:3.11", "Labels": {
               "com.docker.compose.project": "stack",
               "com.docker.compose.service": "comfyui",
               "com.docker.compose.project.working_dir": str(root)}},
           "NetworkSettings": {"Ports": {"8188/tcp": [{"HostIp": "127.0.0.1",
                                                      "HostPort": "18188"}]}},
           "Mounts": [{"Type": "bind", "Source": str(login),
                       "Destination": "/workspace/ComfyUI/login"}]}
    answers = {"http://127.0.0.1:18188": discover.Answer(stats_status=401, login_401=True)}
    return discover.analyse([doc], answers), h, login / "PASSWORD"


async def test_write_config_writes_what_is_shown(tmp_path: Path) -> None:
    p, h, password = proposal(tmp_path / "stack")
    target = tmp_path / "genai-tui.toml"
    target.write_text("# an older config\n")
    screen = DiscoverScreen(target, proposal=p)
    app = Host(screen)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "bind mount of" in screen_text(app))
        text = screen_text(app)
        assert "found 1 service, 1 ComfyUI, 1 credential copy" in text
        assert fingerprint(h) in text and h not in text and h[7:27] not in text
        assert "backed up first" in screen.status
        await pilot.press("w")
        await wait_until(pilot, lambda: screen.written is not None)
        assert "wrote " in screen.status and "previous file kept as" in screen.status
    cfg = load_file(target)
    assert [(s.name, s.container, s.kind, s.auth) for s in cfg.services] == [
        ("comfyui", "stack-comfyui-1", "comfyui", True)]
    assert [loc.path for loc in cfg.tokens.locations] == [password]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    backups = list(tmp_path.glob("genai-tui.toml.bak.*"))
    assert [b.read_text() for b in backups] == ["# an older config\n"]


async def test_readonly_refuses_to_write(tmp_path: Path) -> None:
    p, _, _ = proposal(tmp_path / "stack")
    target = tmp_path / "genai-tui.toml"
    screen = DiscoverScreen(target, proposal=p, readonly=True)
    app = Host(screen)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "read-only mode" in screen_text(app))
        await pilot.press("w")
        await pilot.pause()
        assert screen.status == "read-only mode: not written"
        assert screen.query_one("#btn-write").disabled
    assert not target.exists()


async def test_an_unreachable_engine_is_named(tmp_path: Path) -> None:
    sock = f"unix://{tmp_path}/no-engine.sock"
    screen = DiscoverScreen(tmp_path / "c.toml",
                            find=lambda: discover.propose(docker_host=sock))
    app = Host(screen)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "discovery failed" in screen_text(app))
        # the line wraps at the modal's width, inside the path too: compare without blanks
        # and without the modal's border
        flat = "".join(screen_text(app).replace("█", "").split())
        assert "".join(f"cannot reach the Docker engine at {sock}".split()) in flat
        assert screen.query_one("#btn-write").disabled
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is not screen
    assert not (tmp_path / "c.toml").exists()


async def test_the_dashboard_with_no_config_offers_discovery(monkeypatch) -> None:
    """No config file and none of the reference stack's containers here: the dashboard
    says how to get a config, once, and `i` opens the discovery proposal."""
    from genai_tui.model import ContainerInfo, DockerStatus
    from genai_tui.ui.app import GenaiTui
    from tests.ui.test_dashboard import reference_config

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/genai-tui-test.sock")
    cfg = reference_config()
    assert cfg.path is None
    app = GenaiTui(cfg, start_sources=False)
    toasts: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        real = app.notify
        monkeypatch.setattr(app, "notify", lambda message, **kw: (
            toasts.append(str(message)), real(message, **kw)))
        gone = [ContainerInfo(s.name, s.container_name, state="missing") for s in cfg.services]
        app.stack.apply_containers(DockerStatus(True), gone)
        await wait_until(pilot, lambda: any("press i to discover" in t for t in toasts))
        app.stack.apply_containers(DockerStatus(True), list(gone))
        await pilot.pause(0.1)
        assert sum("press i to discover" in t for t in toasts) == 1  # said once
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, DiscoverScreen))
        await wait_until(pilot, lambda: "genai-tui-test.sock" in screen_text(app).replace(
            "█", "").replace("\n", ""), timeout=10)
