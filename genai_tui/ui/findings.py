"""The findings bar: the conclusions, most severe first, each with the key that fixes it."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from genai_tui.model import Finding, Severity
from genai_tui.safety import one_line
from genai_tui.ui import stylesheets
from genai_tui.ui.render import update_if_changed

# the dashboard's key for each machine `fix` (Finding.fix); fixes with no key show no hint
FIX_KEYS = {"restart": "r", "unify": "u", "read_logs": "l"}

STYLE = {
    Severity.CRITICAL: ("✖", "bold red"),
    Severity.WARNING: ("▲", "bold yellow"),
    Severity.INFO: ("●", "cyan"),
}


def render_findings(findings: list[Finding], *, max_lines: int, services: int,
                    waiting: bool = False) -> Text:
    """The bar's text. Messages quote names, URLs and details from every source: each
    piece is one clean line (`safety.one_line`) appended as plain text, never markup."""
    if waiting:
        return Text("… gathering the first snapshot", style="dim")
    serious = [f for f in findings if f.severity is not Severity.INFO]
    if not serious:
        text = Text("✔ all good", style="bold green")
        text.append(f" — {services} services answering as expected", style="green")
        infos = [f for f in findings if f.severity is Severity.INFO]
        if infos:
            text.append("  · " + one_line(infos[0].message, 300), style="dim")
        return text
    shown = findings if len(findings) <= max_lines else findings[: max_lines - 1]
    text = Text(no_wrap=True, overflow="ellipsis")
    for i, f in enumerate(shown):
        icon, style = STYLE[f.severity]
        if i:
            text.append("\n")
        key = FIX_KEYS.get(f.fix or "")
        if key:
            text.append(f"[{key}] ", style="bold cyan")
        text.append(f"{icon} ", style=style)
        text.append(one_line(f.message, 300))
    hidden = findings[len(shown):]
    if hidden:
        text.append("\n")
        text.append(f"+{len(hidden)} more: " + ", ".join(
            one_line(f.code, 40) + (f" ({one_line(f.service, 64)})" if f.service else "")
            for f in hidden), style="dim")
    return text


class FindingsBar(Static):
    DEFAULT_CSS = stylesheets.read("findings.tcss")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self.max_lines = 5
        self.findings: list[Finding] = []

    def on_mount(self) -> None:
        self.update(render_findings([], max_lines=self.max_lines, services=0, waiting=True))

    def show(self, findings: list[Finding], services: int) -> None:
        self.findings = findings
        worst = min((f.severity.rank for f in findings), default=Severity.INFO.rank)
        self.set_class(worst == 0, "-critical")
        self.set_class(worst == 1, "-warning")
        self.set_class(worst == 2, "-calm")
        update_if_changed(self, render_findings(findings, max_lines=self.max_lines,
                                                services=services))
