"""Shared bits for UI tests: a config for fixed services and the screen as plain text."""

from __future__ import annotations

from genai_tui.config import Config, ServiceConfig, TokensConfig


def stack_config(*containers: str, names: tuple[str, ...] = ()) -> Config:
    services = tuple(
        ServiceConfig(names[i] if i < len(names) else f"svc{i}", f"http://127.0.0.1:{9 + i}",
                      "comfyui", container=c, auth=True)
        for i, c in enumerate(containers))
    return Config(services=services, tokens=TokensConfig())


def screen_text(app) -> str:
    """What the terminal shows, as text (from the SVG export, tags removed)."""
    import html
    import re

    svg = app.export_screenshot()
    texts = re.findall(r"<text[^>]*>(.*?)</text>", svg, flags=re.S)
    return html.unescape("".join(texts)).replace("\xa0", " ")


async def wait_until(pilot, predicate, timeout: float = 15.0) -> None:
    """Let the app run until `predicate()` holds; fail with the screen when it never does."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time; screen:\n" + screen_text(pilot.app))
        await pilot.pause(0.02)


async def until_derived(pilot, before: int) -> None:
    """Wait (not a fixed pause: CI's engine may be busy) until the engine has derived its
    findings again since it had derived `before` times, and the bar shows them laid out."""
    from genai_tui.ui.findings import FindingsBar

    stack, bar = pilot.app.stack, pilot.app.query_one(FindingsBar)

    def derived() -> bool:  # findings are derived 0.2 s after the last update
        return (stack.diagnosed > before and stack._diagnose_handle is None
                and len(bar.findings) == len(stack.snapshot.findings))

    await wait_until(pilot, derived)
    await pilot.pause(0.1)  # the bar's new height: one layout away


def record_terminal(app) -> list[str]:
    """What the app writes to a real terminal from now on, one string per frame (a headless
    app writes nothing: each screen update it displays is rendered as the driver would).
    Over SSH these bytes are the lag."""
    from textual._compositor import CompositorUpdate

    frames: list[str] = []
    display = app._display

    def recording(screen, renderable) -> None:
        if isinstance(renderable, CompositorUpdate):
            frames.append(renderable.render_segments(app.console))
        display(screen, renderable)

    app._display = recording
    return frames


def plain_frames(frames: list[str]) -> str:
    """The recorded frames' text: each cursor move a line break, styles removed."""
    import re

    moved = re.sub(r"\x1b\[[0-9;]*H", "\n", "".join(frames))
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", moved)
