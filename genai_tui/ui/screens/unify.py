"""The unify modal: choose the source of truth, read the plan, confirm, apply, then restart
the services that must reload the credential and show the probe result.

Every step that touches files, bcrypt or Docker runs off the UI thread. Only fingerprints
are shown; the plan object carries the secrets privately and dies with the screen.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, OptionList, Static
from textual.widgets.option_list import Option

from genai_tui.model import ProbeResult, TokensReport
from genai_tui.sources import tokens as tk
from genai_tui.ui.context import AppContext
from genai_tui.ui.render import notify_plain
from genai_tui.ui.tokens import safe

ROTATE = "__rotate__"
#: every step button, in screen order; each step shows some of them
BUTTONS = ("apply", "restart", "skip", "back", "close")


def source_options(report: TokensReport, canonical: str | None) -> list[tuple[str, Text]]:
    """(source location, label) per distinct fingerprint that can serve as a source, the
    canonical one first, then a "rotate" choice."""
    by_name = {s.name: s for s in report.locations}
    out: list[tuple[str, Text]] = []
    for fp, names in report.fingerprints.items():
        locs = [by_name[n] for n in names if n in by_name]
        usable = [s for s in locs if (s.format != "raw_env" and s.state in ("ok", "mismatch"))
                  or (s.format == "raw_env" and s.state in ("ok", "raw_mismatch"))]
        if not usable:
            continue
        pick = next((s for s in usable if s.name == canonical), usable[0])
        newest = max((s.mtime for s in locs if s.mtime), default=None)
        label = Text()
        label.append(safe(fp, 40), style="bold")
        label.append("  " + ", ".join(safe(s.name, 30) for s in locs))
        if pick.format == "raw_env":
            label.append("  (raw token)", style="cyan")
        if any(s.name == canonical for s in locs):
            label.append("  canonical", style="green")
        if newest is not None:
            label.append(f"  {newest.strftime('%Y-%m-%d %H:%M')}", style="dim")
        out.append((pick.name, label))
    out.sort(key=lambda item: item[0] != canonical)
    out.append((ROTATE, Text("New credential (rotate): random token + bcrypt hash",
                             style="yellow")))
    return out


def plan_text(plan: tk.UnifyPlan) -> Text:
    text = Text()
    head = "rotate → a NEW credential" if plan.rotate else f"source: {safe(plan.source, 40)}"
    text.append(f"{head}\ntarget: {safe(plan.target, 40)}\n", style="bold")
    if not plan.changes:
        text.append(f"Nothing to change: {len(plan.unchanged)} location(s) already hold "
                    f"{safe(plan.target, 40)}.\n", style="green")
    for c in plan.changes:
        text.append(f"  {safe(c.location, 14):<14} {safe(c.action, 7):<7} ")
        text.append(f"{safe(c.before or '–', 40)} → {safe(c.after, 40)}", style="cyan")
        text.append(f"  {safe(c.reason, 40)}\n", style="dim")
        if c.target and os.path.abspath(c.path) != c.target:
            text.append(f"  {'':<14} writes {safe(c.target, 120)} (through a symlink)\n",
                        style="yellow")
    for b in plan.blocked:
        text.append(f"  {safe(b.location, 14):<14} left unchanged: {safe(b.reason, 160)}\n",
                    style="yellow")
    for w in plan.warnings:
        text.append(f"  warning: {safe(w, 200)}\n", style="yellow")
    return text


def probe_text(r: ProbeResult) -> Text:
    if r.outcome != "ok":
        return Text(f"{safe(r.service, 30)}: {safe(r.outcome, 20)} ({safe(r.detail, 80)})",
                    style="red")
    if r.auth == "enforced":
        return Text(f"{safe(r.service, 30)}: enforced — the new hash is accepted (200)",
                    style="green")
    if r.auth == "rejected":
        return Text(f"{safe(r.service, 30)}: rejected — the hash on disk is refused (401)",
                    style="bold red")
    return Text(f"{safe(r.service, 30)}: {safe(r.auth, 20)} ({safe(r.detail, 80)})",
                style="yellow")


class UnifyScreen(ModalScreen[bool]):
    """choose → plan → apply → (restart → probe) → done; `step` names where it is."""

    DEFAULT_CSS = """
    UnifyScreen { align: center middle; }
    UnifyScreen > Vertical { width: 90%; max-width: 110; height: auto; max-height: 90%;
        border: thick $warning; background: $surface; padding: 0 1; }
    UnifyScreen #unify-title { height: auto; margin-bottom: 1; }
    UnifyScreen OptionList { height: auto; max-height: 10; }
    UnifyScreen #unify-body { height: auto; max-height: 16; overflow-y: auto; }
    UnifyScreen #unify-buttons { height: auto; margin-top: 1; }
    UnifyScreen Button { margin: 0 1; }
    """
    BINDINGS = [
        Binding("escape", "cancel", "Close", show=False),
        Binding("a", "press('apply')", "Apply", show=False),
        Binding("b", "press('back')", "Back", show=False),
        Binding("r", "press('restart')", "Restart", show=False),
        Binding("n", "press('skip')", "Not now", show=False),
        Binding("c", "press('close')", "Close", show=False),
    ]

    def __init__(self, ctx: AppContext, report: TokensReport | None = None, *,
                 on_change: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.on_change = on_change
        self.report = report
        self.step = "loading"
        self.plan: tk.UnifyPlan | None = None
        self.result: tk.UnifyResult | None = None
        self.error: str | None = None
        self.restarts: list[tuple[str, bool, str]] = []
        self.probes: list[ProbeResult] = []
        self._stop = threading.Event()
        self._busy = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Unify the ComfyUI-Login credential", style="bold"),
                         id="unify-title")
            yield OptionList(id="unify-sources")
            yield Static("", id="unify-body")
            with Horizontal(id="unify-buttons"):
                for bid in BUTTONS:
                    yield Button(bid, id=f"btn-{bid}")

    def on_mount(self) -> None:
        self._load()

    def on_unmount(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ steps

    def _body(self, text: Text | str) -> None:
        self.query_one("#unify-body", Static).update(text)

    def _buttons(self, *specs: tuple[str, str, str], focus: bool = True) -> None:
        """Show only these step buttons (id, label, variant), in the given order."""
        shown = {bid: (label, variant) for bid, label, variant in specs}
        for bid in BUTTONS:
            button = self.query_one(f"#btn-{bid}", Button)
            button.display = bid in shown
            if bid in shown:
                label, variant = shown[bid]
                button.label = Text(label)
                button.variant = variant  # type: ignore[assignment]
        if specs and focus:
            self.call_after_refresh(self.query_one(f"#btn-{specs[0][0]}", Button).focus)

    @work(exclusive=True, group="unify", exit_on_error=False)
    async def _load(self) -> None:
        self._busy = True
        self._body(Text("Reading the token locations…", style="dim"))
        try:
            report = await asyncio.to_thread(tk.read_report, self.ctx.config.tokens)
            snap = self.ctx.snapshot
            report.servers = tk.server_status(report, list(snap.probes), list(snap.log_events))
        finally:
            self._busy = False
        self.report = report
        self._choose()

    def _choose(self) -> None:
        self.step = "choose"
        options = source_options(self.report or TokensReport(),
                                 self.ctx.config.tokens.canonical)
        ol = self.query_one(OptionList)
        ol.clear_options()
        ol.add_options([Option(label, id=name) for name, label in options])
        ol.display = True
        ol.highlighted = 0
        ol.focus()
        self._body(Text("Choose the source of truth (Enter). The canonical location is "
                        "first; rotating makes a new credential.", style="dim"))
        self._buttons(("close", "Cancel (esc)", "default"), focus=False)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if self.step != "choose" or self._busy:
            return
        oid = event.option.id or ""
        self._make_plan(None if oid == ROTATE else oid, oid == ROTATE)

    @work(exclusive=True, group="unify", exit_on_error=False)
    async def _make_plan(self, source: str | None, rotate: bool) -> None:
        self.step = "planning"
        self._busy = True
        self.query_one(OptionList).display = False
        self._body(Text("Making the plan…" + (" (hashing the new token)" if rotate else ""),
                        style="dim"))
        self._buttons()
        try:
            plan = await asyncio.to_thread(tk.plan_unify, self.ctx.config.tokens, source,
                                           rotate=rotate)
            if plan.empty:  # nothing to write; the audit still records the unify
                await asyncio.to_thread(tk.apply_plan, self.ctx.config.tokens, plan)
        except tk.UnifyError as exc:
            self._fail(str(exc), back=True)
            return
        except Exception as exc:  # never a traceback on screen
            self._fail(f"cannot make the plan: {type(exc).__name__}", back=True)
            return
        finally:
            self._busy = False
        self.plan = plan
        self.step = "plan"
        self._body(plan_text(plan))
        if plan.empty:
            self._after_apply(nothing=True)
        else:
            self._buttons(("apply", f"Apply {len(plan.changes)} change(s) (a)", "warning"),
                          ("back", "Back (b)", "default"), ("close", "Cancel (esc)", "default"))

    @work(exclusive=True, group="unify", exit_on_error=False)
    async def _apply(self) -> None:
        plan = self.plan
        if plan is None:
            return
        self.step = "applying"
        self._busy = True
        self._buttons()
        self._body(Text("Applying…", style="dim"))
        try:
            self.result = await asyncio.to_thread(tk.apply_plan, self.ctx.config.tokens, plan,
                                                  base_dir=self.ctx.config.base_dir)
        except tk.UnifyError as exc:
            self._fail(str(exc))
            return
        except Exception as exc:
            self._fail(f"unify failed: {type(exc).__name__}")
            return
        finally:
            self._busy = False
        notify_plain(self.app, safe(self.result.message, 120), title="Unify")
        if self.on_change is not None:
            self.on_change()
        self._after_apply()

    def _after_apply(self, nothing: bool = False) -> None:
        plan = self.plan
        names = list(self.ctx.config.tokens.restart_after_unify)
        text = plan_text(plan) if plan is not None and nothing else Text()
        if not nothing and self.result is not None:
            text.append(f"Done: {safe(self.result.message, 120)}\n", style="bold green")
            for b in self.result.backups:
                text.append(f"  backup: {safe(tk.display_path(b, self.ctx.config.base_dir))}\n",
                            style="dim")
        changed = bool(plan and plan.value_changes) and not nothing
        stale = [s.service for s in (self.report.servers if self.report else [])
                 if s.uses_disk_hash is False and s.service in names]
        if names and (changed or stale):
            self.step = "offer_restart"
            text.append("\nComfyUI-Login reads PASSWORD only at start-up: restart "
                        f"{', '.join(safe(n, 30) for n in names)} now?\n", style="bold")
            text.append("(.env changes need `docker compose up -d` to reach a container)",
                        style="dim")
            self._body(text)
            self._buttons(("restart", "Restart (r)", "warning"), ("skip", "Not now (n)",
                                                                  "default"))
        else:
            self.step = "done"
            self._body(text)
            self._buttons(("close", "Close (c)", "primary"))

    @work(exclusive=True, group="unify", exit_on_error=False)
    async def _restart(self) -> None:
        names = list(self.ctx.config.tokens.restart_after_unify)
        self.step = "restarting"
        self._busy = True
        self._buttons()
        self._body(Text(f"Restarting {', '.join(safe(n, 30) for n in names)}…", style="dim"))
        try:
            self.restarts = await asyncio.to_thread(tk.restart_services, self.ctx.config, names)
            ok = [n for n, good, _ in self.restarts if good]
            self._body(Text("Restarted; probing with the hash on disk…", style="dim"))
            self.probes = (await asyncio.to_thread(tk.probe_after_restart, self.ctx.config, ok,
                                                   stop=self._stop)) if ok else []
        except Exception as exc:
            self._fail(f"restart failed: {type(exc).__name__}")
            return
        finally:
            self._busy = False
        text = Text()
        for n, good, detail in self.restarts:
            text.append(f"{safe(n, 30)}: {'restarted' if good else 'NOT restarted'} — "
                        f"{safe(detail, 120)}\n", style="green" if good else "bold red")
        for r in self.probes:
            text.append_text(probe_text(r))
            text.append("\n")
        self.step = "restarted"
        self._body(text)
        self._buttons(("close", "Close (c)", "primary"))

    def _fail(self, message: str, back: bool = False) -> None:
        self.step = "error"
        self.error = safe(message, 400)
        self._body(Text(self.error, style="bold red"))
        specs = [("close", "Close (c)", "primary")]
        if back:
            specs.insert(0, ("back", "Back (b)", "default"))
        self._buttons(*specs)

    # ------------------------------------------------------------------ input

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_press((event.button.id or "").removeprefix("btn-"))

    def action_press(self, what: str) -> None:
        """A step button by name; ignored unless that button is on screen."""
        if self._busy or not self.query_one(f"#btn-{what}", Button).display:
            return
        if what == "apply" and self.step == "plan":
            self._apply()
        elif what == "back":
            self._choose()
        elif what == "restart" and self.step == "offer_restart":
            self._restart()
        elif what == "skip":
            self.step = "done"
            names = " ".join(_container(self.ctx, n)
                             for n in self.ctx.config.tokens.restart_after_unify)
            self._body(Text(f"Not restarted. Restart later: docker restart {safe(names)}",
                            style="yellow"))
            self._buttons(("close", "Close (c)", "primary"))
        elif what == "close":
            self.dismiss(self.result is not None)

    def action_cancel(self) -> None:
        if self._busy and self.step in ("applying",):
            return  # a write in progress finishes (or rolls back) first
        self.dismiss(self.result is not None)


def _container(ctx: AppContext, name: str) -> str:
    svc = ctx.config.service(name)
    return svc.container_name if svc else name
