"""The unify modal: choose the source of truth, read the plan, confirm, apply, then restart
the services that must reload the credential and show the probe result.

Every step that touches files, bcrypt or Docker runs off the UI thread. Only fingerprints
are shown; the plan object carries the secrets privately and dies with the screen.
"""

from __future__ import annotations

import asyncio
import os
import threading

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, OptionList, Static
from textual.widgets.option_list import Option

from genai_tui.config import Config
from genai_tui.engine import actions
from genai_tui.engine.live import Stack
from genai_tui.model import ProbeResult, TokensReport
from genai_tui.safety import shown as safe
from genai_tui.sources import tokens as tk
from genai_tui.ui import stylesheets
from genai_tui.ui.render import notify_plain

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

    DEFAULT_CSS = stylesheets.read("screens.tcss")
    BINDINGS = [
        Binding("escape", "cancel", "Close", show=False),
        Binding("a", "press('apply')", "Apply", show=False),
        Binding("b", "press('back')", "Back", show=False),
        Binding("r", "press('restart')", "Restart", show=False),
        Binding("n", "press('skip')", "Not now", show=False),
        Binding("c", "press('close')", "Close", show=False),
    ]

    def __init__(self, stack: Stack, *, readonly: bool = False) -> None:
        super().__init__()
        self.stack = stack
        self.config = stack.config
        self.readonly = readonly
        self.report: TokensReport | None = stack.snapshot.tokens
        self.step = "loading"
        self.plan: tk.UnifyPlan | None = None
        self.result: tk.UnifyResult | None = None
        self.outcome: actions.UnifyOutcome | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._busy = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Unify the ComfyUI-Login credential", style="bold"),
                         id="unify-title")
            yield OptionList(id="unify-sources")
            with VerticalScroll(id="unify-scroll"):  # a long plan scrolls; buttons stay
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
        if self.report is None:  # the engine has not read them yet: read them now
            self._busy = True
            self._body(Text("Reading the token locations…", style="dim"))
            try:
                self.report = await asyncio.to_thread(actions.token_report, self.stack)
            finally:
                self._busy = False
        self._choose()

    def _choose(self) -> None:
        self.step = "choose"
        options = source_options(self.report or TokensReport(), self.config.tokens.canonical)
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
            plan = await asyncio.to_thread(actions.plan, self.config, source, rotate=rotate)
            if plan.empty:  # nothing to write; the audit still records the unify
                self.outcome = await asyncio.to_thread(actions.apply_unify, self.config, plan)
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
            self.outcome = await asyncio.to_thread(actions.apply_unify, self.config, plan)
            self.result = self.outcome.result
        except tk.UnifyError as exc:
            self._fail(str(exc))
            return
        except Exception as exc:
            self._fail(f"unify failed: {type(exc).__name__}")
            return
        finally:
            self._busy = False
        assert self.result is not None
        notify_plain(self.app, safe(self.result.message, 120), title="Unify")
        # the panels' verdict is recomputed at once, not at the next poll
        self.stack.refresh("tokens")
        self.stack.probe_now()
        self._after_apply()

    def _after_apply(self, nothing: bool = False) -> None:
        """Offer a restart only to the servers that do not use the hash now on disk."""
        plan = self.plan
        text = plan_text(plan) if plan is not None and nothing else Text()
        if not nothing and self.result is not None:
            text.append(f"Done: {safe(self.result.message, 120)}\n", style="bold green")
            for b in self.result.backups:
                text.append(f"  backup: {safe(tk.display_path(b, self.config.base_dir))}\n",
                            style="dim")
            for w in self.result.warnings:
                text.append(f"  warning: {safe(w, 200)}\n", style="yellow")
        outcome = self.outcome
        if outcome is not None and outcome.compose_env_changed:
            text.append("A compose env file changed: `docker compose up -d` applies it to "
                        "the services that read it.\n", style="dim")
        needs = outcome.needs if outcome is not None else []
        if needs:
            self.step = "offer_restart"
            text.append("\nComfyUI-Login reads PASSWORD only at start-up. Restart now?\n",
                        style="bold")
            for n in needs:
                text.append(f"  {safe(n.service, 30)}: {safe(n.why, 120)}\n")
            self._body(text)
            self._buttons(("restart", "Restart (r)", "warning"), ("skip", "Not now (n)",
                                                                  "default"))
        else:
            self.step = "done"
            self._body(text)
            self._buttons(("close", "Close (c)", "primary"))

    @work(exclusive=True, group="unify", exit_on_error=False)
    async def _restart(self) -> None:
        outcome = self.outcome
        if outcome is None:
            return
        names = [n.service for n in outcome.needs]
        self.step = "restarting"
        self._busy = True
        self._buttons()
        self._body(Text(f"Restarting {', '.join(safe(n, 30) for n in names)}…", style="dim"))
        for n in names:  # shown in the containers table like a restart started with `r`
            self.stack.set_action(n, "restarting")
        try:
            await asyncio.to_thread(actions.restart_and_verify, self.config, outcome,
                                    stop=self._stop)
        except Exception as exc:
            for n in names:
                self.stack.set_action(n, None)
            self._fail(f"restart failed: {type(exc).__name__}")
            return
        finally:
            self._busy = False
        text = Text()
        for r in outcome.restarts:
            self.stack.set_action(r.service, None if r.ok else f"restart failed: {r.detail}")
            if r.ok:
                text.append(f"{safe(r.service, 30)}: restarted\n", style="green")
            else:
                text.append(f"{safe(r.service, 30)}: NOT restarted — {safe(r.detail, 120)}\n",
                            style="bold red")
        for r in outcome.probes:
            text.append_text(probe_text(r))
            text.append("\n")
        self.stack.refresh()
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
            needs = self.outcome.needs if self.outcome is not None else []
            names = " ".join(_container(self.config, n.service) for n in needs)
            self._body(Text(f"Not restarted. Restart later: docker restart {safe(names)}",
                            style="yellow"))
            self._buttons(("close", "Close (c)", "primary"))
        elif what == "close":
            self.dismiss(self.result is not None)

    def action_cancel(self) -> None:
        if self._busy and self.step in ("applying",):
            return  # a write in progress finishes (or rolls back) first
        self.dismiss(self.result is not None)


def _container(config: Config, name: str) -> str:
    svc = config.service(name)
    return svc.container_name if svc else name
