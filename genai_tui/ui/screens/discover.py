"""The discovery modal (`i` when no config was found): what `genai-tui init` would
propose, with its evidence and the TOML, and a button that writes it.

Discovery (engine inspection, HTTP probes, file reads) and the write both run off the UI
thread. Everything shown comes from `genai_tui.sources.discover`, which names secrets by
fingerprint only; names and paths are cleaned again here and rendered as `Text`, never
markup. Read-only mode refuses the write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from genai_tui.safety import shown as safe
from genai_tui.sources import discover
from genai_tui.ui import stylesheets


def proposal_text(p: discover.Proposal, toml: str) -> Text:
    """The proposal as the modal shows it: summary, services, copies, warnings, TOML."""
    text = Text()
    text.append(safe(discover.summary_line(p), 200) + "\n", style="bold")
    if p.error:
        return text
    for s in p.services:
        text.append(f"  {safe(s.name, 30):<22} {s.kind:<12} "
                    f"{'auth' if s.auth else 'open':<5} {safe(s.url or '-', 40)}\n")
        for ev in s.evidence:
            text.append(f"      {safe(ev, 200)}\n", style="dim")
    for loc in p.locations:
        star = "*" if loc.name == p.canonical else " "
        text.append(f"  {star}{safe(loc.name, 30):<28} {loc.format:<13} "
                    f"{safe(loc.fingerprint or loc.state, 24):<18} {safe(loc.path, 120)}\n",
                    style="cyan")
        for ev in loc.evidence:
            text.append(f"      {safe(ev, 200)}\n", style="dim")
    for w in p.warnings:
        text.append(f"  warning: {safe(w, 300)}\n", style="yellow")
    text.append("\n")
    for line in toml.splitlines():  # the file as it would be written (escaped, no secret)
        text.append(safe(line, 300) + "\n", style="green" if not line.startswith("#")
                    else "dim")
    return text


class DiscoverScreen(ModalScreen["Path | None"]):
    """Shows a proposal (given, or found by `find` in a worker) and writes it to
    `target` on "write"; dismisses with the path written, or None."""

    DEFAULT_CSS = stylesheets.read("screens.tcss")
    BINDINGS = [
        Binding("escape,c", "close", "Close", show=False),
        Binding("w", "write", "Write config", show=False),
    ]

    def __init__(self, target: Path, *, proposal: discover.Proposal | None = None,
                 find: Callable[[], discover.Proposal] | None = None,
                 readonly: bool = False) -> None:
        super().__init__()
        self.target = Path(target)
        self.proposal = proposal
        self.find = find or discover.propose
        self.readonly = readonly
        self.written: Path | None = None
        self.status = ""
        self._busy = False

    def compose(self) -> ComposeResult:
        with Vertical(id="discover-box"):
            yield Static(Text("Discover the services on this host", style="bold"),
                         id="discover-title")
            with VerticalScroll(id="discover-scroll"):
                yield Static(Text("Inspecting the Docker engine…", style="dim"),
                             id="discover-body")
            yield Static("", id="discover-status")
            with Horizontal(id="discover-buttons"):
                yield Button(Text(f"Write {safe(self.target.name, 40)} (w)"),
                             variant="warning", id="btn-write", disabled=True)
                yield Button(Text("Close (esc)"), id="btn-close")

    def on_mount(self) -> None:
        if self.proposal is None:
            self._discover()
        else:
            self._show()

    @work(exclusive=True, group="discover", exit_on_error=False)
    async def _discover(self) -> None:
        self._busy = True
        try:
            self.proposal = await asyncio.to_thread(self.find)
        except Exception as exc:  # a bug in discovery must not take the dashboard down
            self.proposal = discover.Proposal(engine="?",
                                              error=f"discovery failed ({type(exc).__name__})")
        finally:
            self._busy = False
        self._show()

    def _toml(self) -> str:
        assert self.proposal is not None
        return "" if self.proposal.error else discover.to_toml(
            self.proposal, self.target.parent.absolute())

    def _show(self) -> None:
        assert self.proposal is not None
        self.query_one("#discover-body", Static).update(
            proposal_text(self.proposal, self._toml()))
        can = not self.proposal.error and bool(self.proposal.services)
        button = self.query_one("#btn-write", Button)
        button.disabled = not can or self.readonly
        if self.readonly:
            self._say("read-only mode: the config cannot be written from here "
                      "(use genai-tui init --write PATH)", "yellow")
        elif can:
            exists = self.target.exists() or self.target.is_symlink()
            self._say(f"w writes {safe(self.target, 200)}"
                      + (" (the current file is backed up first)" if exists else ""), "dim")
            button.focus()

    def _say(self, text: str, style: str) -> None:
        self.status = text
        self.query_one("#discover-status", Static).update(Text(text, style=style))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "btn-write":
            self.action_write()
        else:
            self.action_close()

    def action_close(self) -> None:
        self.dismiss(self.written)

    def action_write(self) -> None:
        if self.readonly:
            self._say("read-only mode: not written", "yellow")
            return
        if self._busy or self.proposal is None or self.proposal.error \
                or not self.proposal.services:
            return
        self._write(self._toml())

    @work(exclusive=True, group="discover", exit_on_error=False)
    async def _write(self, text: str) -> None:
        self._busy = True
        try:
            result = await asyncio.to_thread(discover.write_config, text, self.target)
        except discover.WriteRefused as exc:
            self._say(f"not written: {safe(str(exc), 300)}", "red")
            return
        except OSError as exc:
            self._say(f"not written: {safe(type(exc).__name__, 40)}", "red")
            return
        finally:
            self._busy = False
        self.written = result.path
        backup = f" (previous file kept as {safe(result.backup.name, 80)})" \
            if result.backup else ""
        self._say(f"wrote {safe(result.path, 200)}{backup}; restart genai-tui to use it",
                  "green")
        self.query_one("#btn-write", Button).disabled = True
