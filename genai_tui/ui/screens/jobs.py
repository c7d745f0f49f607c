"""The jobs view: every job one ComfyUI service has (running, pending, finished) and the
queue actions on them: `i` interrupt the running job, `x` cancel the selected pending
job, `X` clear the queue, `v` free VRAM; `s` the next service.

Each action asks first (ConfirmScreen naming the service and the job), is refused under
`--readonly` (and then not in the footer either) and runs through
`genai_tui.engine.actions` off the UI thread; its one-line outcome is a toast, and the
jobs part (and, after a free, the GPU and probes) is re-read at once. The palette offers
the same actions (`jobs_commands`), and the restart confirm counts what a restart loses
(`jobs_lost`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from genai_tui.model import JobInfo, JobsReport, ServiceJobs
from genai_tui.safety import shown
from genai_tui.ui import stylesheets
from genai_tui.ui.jobs import (
    STATE_MARKS,
    fmt_duration,
    pending_text,
    running_text,
    short_id,
    vram_text,
)
from genai_tui.ui.render import (
    RowTable,
    add_row,
    forget_cells,
    notify_plain,
    set_cell,
    update_if_changed,
)
from genai_tui.ui.screens.confirm import ConfirmScreen

#: the view's actions that change something (hidden and refused under --readonly)
MUTATING_ACTIONS = frozenset({"interrupt", "cancel", "clear", "free"})
#: the view's keys in words (the help and the README's table say the same)
JOBS_WORDS = {
    "interrupt": "interrupt the running job (asks first)",
    "cancel": "cancel the selected pending job (asks first)",
    "clear": "clear the pending queue (asks first)",
    "free": "free VRAM: unload the models (asks first; waits for a running job)",
    "next_service": "the next ComfyUI service",
    "close": "close the view",
}


# ---------------------------------------------------------------- words


def jobs_lost(report: JobsReport | None, services: Sequence[str]) -> str | None:
    """What restarting these services loses, as the restart confirm says it: "1 running,
    3 pending jobs on flux-1-dev will be lost"; None when no queue of them is known."""
    if report is None:
        return None
    lines = []
    for name in services:
        sj = report.get(name)
        if sj is None:
            continue
        who = shown(name, 64)
        if sj.api == "none" and sj.error:
            lines.append(f"the queue of {who} could not be read: its jobs may be lost")
            continue
        running = 1 if sj.running is not None else 0
        if running or sj.pending:
            lines.append(f"{running} running, {len(sj.pending)} pending jobs on {who} "
                         "will be lost")
        else:
            lines.append(f"no job running or pending on {who}")
    return "\n".join(lines) if lines else None


def _who(sj: ServiceJobs) -> str:
    return shown(sj.service, 64)


def _progress(job: JobInfo) -> str:
    if job.steps:
        return f"step {job.step or 0}/{job.steps}"
    if job.nodes_total:
        return f"node {job.nodes_done or 0}/{job.nodes_total}"
    return "no progress yet"


# ---------------------------------------------------------------- asking, then doing


class JobActions:
    """The four queue actions for a face: a confirm naming the service and the job, then
    the engine's action off the UI thread, a toast with its outcome, and a re-read."""

    def __init__(self, app: Any, *, readonly: bool) -> None:
        self.app = app
        self.readonly = readonly

    def refused(self, what: str) -> bool:
        if self.readonly:
            notify_plain(self.app, f"read-only mode: {what} is disabled", title="Read-only",
                         severity="warning")
            return True
        return False

    def _run(self, work: Callable[[], Any], refresh: Sequence[str] = ("jobs",)) -> None:
        stack = self.app.stack

        async def run() -> None:
            out = await asyncio.to_thread(work)
            notify_plain(self.app, out.message, title="Jobs",
                         severity="information" if out.ok else "error",
                         timeout=8 if out.ok else 12)
            for part in refresh:
                stack.refresh(part)
            self.app.post_message(JobActionDone(out))

        self.app.run_worker(run(), group="job-actions", exit_on_error=False)

    def _ask(self, question: str, yes: str, work: Callable[[], Any],
             refresh: Sequence[str] = ("jobs",)) -> None:
        def done(answer: bool | None) -> None:
            if answer and not self.readonly:
                self._run(work, refresh)

        self.app.push_screen(ConfirmScreen(question, yes=yes, no="Keep"), done)

    def interrupt(self, sj: ServiceJobs) -> None:
        if self.refused("interrupt"):
            return
        job = sj.running
        if job is None:
            notify_plain(self.app, f"{_who(sj)}: no job is running", severity="warning")
            return
        actions = _engine_actions(self.app)
        config, api, pid = self.app.stack.config, sj.api, job.prompt_id
        self._ask(f"Interrupt job {short_id(pid)} on {_who(sj)}?\n"
                  f"It is at {_progress(job)}; what it computed so far is lost.",
                  "Interrupt", lambda: actions.interrupt_job(
                      config, sj.service, pid, api="jobs" if api == "jobs" else "queue"))

    def cancel(self, sj: ServiceJobs, job: JobInfo | None) -> None:
        if self.refused("cancel"):
            return
        if job is None or job.state != "pending":
            notify_plain(self.app, f"{_who(sj)}: select a pending job to cancel",
                         severity="warning")
            return
        actions = _engine_actions(self.app)
        config, api, pid = self.app.stack.config, sj.api, job.prompt_id
        wait = ""
        if job.queued_at is not None:
            waited = (_now(self.app) - job.queued_at).total_seconds()
            wait = f"\nIt has waited {fmt_duration(waited)}."
        self._ask(f"Cancel pending job {short_id(pid)} on {_who(sj)}?{wait}",
                  "Cancel job", lambda: actions.cancel_jobs(
                      config, sj.service, [pid], api="jobs" if api == "jobs" else "queue"))

    def clear(self, sj: ServiceJobs) -> None:
        if self.refused("clear queue"):
            return
        if not sj.pending:
            notify_plain(self.app, f"{_who(sj)}: no job is pending", severity="warning")
            return
        actions = _engine_actions(self.app)
        config = self.app.stack.config
        ids = ", ".join(short_id(j.prompt_id) for j in sj.pending[:4])
        more = f" +{len(sj.pending) - 4}" if len(sj.pending) > 4 else ""
        running = (f"the running job {short_id(sj.running.prompt_id)} goes on"
                   if sj.running is not None else "no job is running")
        self._ask(f"Clear the queue of {_who(sj)}?\n"
                  f"{len(sj.pending)} pending jobs are removed ({ids}{more}); {running}.",
                  "Clear queue", lambda: actions.clear_queue(config, sj.service))

    def free(self, sj: ServiceJobs) -> None:
        if self.refused("free VRAM"):
            return
        actions = _engine_actions(self.app)
        config = self.app.stack.config
        held = vram_text(sj)
        now = f" ({held.plain} now)" if held is not None else ""
        when = (f"\nJob {short_id(sj.running.prompt_id)} is running: ComfyUI frees the memory "
                "when it ends (it is not interrupted)." if sj.running is not None else "")
        self._ask(f"Free VRAM on {_who(sj)}{now}?\n"
                  "Its models are unloaded; the next job loads them again." + when,
                  "Free VRAM", lambda: actions.free_vram(
                      config, sj.service,
                      # the engine's own "closing" flag: quitting never waits on the re-read
                      stop=getattr(self.app.stack, "_stopped", None)),
                  refresh=("jobs", "gpu", "probes"))


def _engine_actions(app: Any) -> Any:
    """The queue actions of the stack shown: the engine's own, or a fleet host's (the
    same names, run there as genai-tui subcommands)."""
    remote = getattr(app.stack, "actions", None)
    if remote is not None:
        return remote
    from genai_tui.engine import actions

    return actions


class JobActionDone(Message):
    """Posted to the app after a queue action (tests wait on it): the engine's outcome."""

    def __init__(self, outcome: Any) -> None:
        super().__init__()
        self.outcome = outcome


def _now(app: Any) -> datetime:
    clock = getattr(app, "clock", None)
    return clock() if callable(clock) else datetime.now(UTC)


# ---------------------------------------------------------------- the view


COLUMNS = (("state", "state"), ("job", "job"), ("number", "#"), ("when", "waited / took"),
           ("progress", "progress"), ("detail", "detail"))


class JobsScreen(ModalScreen[None]):
    """Every job of one ComfyUI service, and the queue actions on them."""

    DEFAULT_CSS = stylesheets.read("jobs.tcss")
    BINDINGS = [
        Binding("i", "interrupt", "Interrupt"),
        Binding("x", "cancel", "Cancel job"),
        Binding("X", "clear", "Clear queue"),
        Binding("v", "free", "Free VRAM"),
        Binding("s", "next_service", "Next service"),
        Binding("escape,q", "close", "Close"),
    ]

    def __init__(self, report: JobsReport, service: str | None = None, *,
                 readonly: bool = False) -> None:
        super().__init__()
        self.report = report
        names = [s.service for s in report.services]
        self.service = service if service in names else (names[0] if names else None)
        self.readonly = readonly
        self.rows: dict[str, JobInfo] = {}
        self._order: list[tuple[str | None, str, str]] | None = None
        if readonly:  # the mutating keys leave the footer; pressed, they say why not
            table = self._bindings.key_to_bindings
            for key, items in table.items():
                table[key] = [replace(b, show=False) if b.action in MUTATING_ACTIONS
                              else b for b in items]

    def compose(self) -> ComposeResult:
        with Vertical(id="jobs-box"):
            yield Static(id="jobs-title")
            yield RowTable(id="jobs-table", cursor_type="row", zebra_stripes=False)
            yield Static(id="jobs-hint")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self.show(self.report)
        table.focus()

    @property
    def jobs(self) -> ServiceJobs | None:
        return self.report.get(self.service) if self.service else None

    def show(self, report: JobsReport) -> None:
        """(Re)draw from a newer report, keeping the selected job where it still is."""
        self.report = report
        if self.service not in {s.service for s in report.services}:
            self.service = report.services[0].service if report.services else None
        table = self.query_one(DataTable)
        keep = self.selected.prompt_id if self.selected is not None else None
        sj = self.jobs
        now = _now(self.app)
        title = Text("Jobs", style="bold")
        if sj is None:
            title.append(" — no ComfyUI queue known", style="dim")
        else:
            title.append(" — " + _who(sj), style="bold")
            title.append("  ")
            title.append_text(running_text(sj.running, now) if sj.running is not None
                              else Text("idle", style="dim"))
            title.append("  ·  ")
            title.append_text(pending_text(sj))
            held = vram_text(sj)
            if held is not None:
                title.append("  ·  ")
                title.append_text(held)
            if sj.error:
                title.append("  ⚠ " + shown(sj.error, 120), style="yellow")
        jobs = ([] if sj is None else ([sj.running] if sj.running else [])
                + list(sj.pending) + list(sj.recent))
        order = [(self.service, j.prompt_id, j.state) for j in jobs]
        if order == self._order:  # the same jobs in the same places: only changed cells
            for i, job in enumerate(jobs):
                self.rows[str(i)] = job
                for col, value in self._cells(job, now).items():
                    set_cell(table, str(i), col, value)
        else:  # jobs came, went or moved: rebuild, keeping the selected job selected
            self._order = order
            table.clear()
            forget_cells(table)
            self.rows = {}
            for i, job in enumerate(jobs):
                self.rows[str(i)] = job
                add_row(table, str(i), self._cells(job, now))
            for i, job in enumerate(jobs):
                if job.prompt_id == keep:
                    table.move_cursor(row=i)
                    break
        update_if_changed(self.query_one("#jobs-title", Static), title)
        update_if_changed(self.query_one("#jobs-hint", Static), self._hint())

    def _cells(self, job: JobInfo, now: datetime) -> dict[str, Text]:
        if job.state == "running":
            state = Text("▶ running", style="bold green")
        elif job.state == "pending":
            state = Text("… pending", style="yellow")
        else:
            word, style = STATE_MARKS.get(job.state, (shown(job.state, 20), ""))
            state = Text(word, style=style)
        when = "–"
        if job.state == "pending" and job.queued_at is not None:
            when = fmt_duration((now - job.queued_at).total_seconds())
        elif job.state == "running" and job.started_at is not None:
            when = fmt_duration((now - job.started_at).total_seconds())
        elif job.started_at is not None and job.finished_at is not None:
            when = fmt_duration((job.finished_at - job.started_at).total_seconds())
        progress = ""
        if job.state == "running":
            progress = _progress(job) + (f" · {job.it_per_s:.2f} it/s" if job.it_per_s else "")
        detail = Text()
        if job.error_type:
            detail.append(shown(job.error_type, 40), style="bold red")
        if job.error_message:
            detail.append((" " if detail else "") + shown(job.error_message, 200))
        return {"state": state, "job": Text(short_id(job.prompt_id)),
                "number": Text("" if job.number is None else str(job.number)),
                "when": Text(when), "progress": Text(progress), "detail": detail}

    def _hint(self) -> Text:
        keys = [("↑↓", "choose a job")]
        if not self.readonly:
            keys += [(self._key("interrupt"), "interrupt"), (self._key("cancel"), "cancel"),
                     (self._key("clear"), "clear queue"), (self._key("free"), "free VRAM")]
        if len(self.report.services) > 1:
            keys.append((self._key("next_service"), "next service"))
        keys.append(("Esc", "close"))
        text = Text()
        for i, (key, words) in enumerate(keys):
            if i:
                text.append("  ")
            text.append(shown(key, 12), style="bold cyan")
            text.append(" " + words, style="dim")
        if self.readonly:
            text.append("  read-only: the queue actions are off", style="bold yellow")
        return text

    def _key(self, action: str) -> str:
        for key, items in self._bindings.key_to_bindings.items():
            if any(b.action == action for b in items):
                return self.app.get_key_display(Binding(key, action))
        return "?"

    @property
    def selected(self) -> JobInfo | None:
        try:
            table = self.query_one(DataTable)
        except Exception:
            return None
        if not table.row_count:
            return None
        try:
            row = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:
            return None
        return self.rows.get(str(row))

    # -- actions
    @property
    def _actions(self) -> JobActions:
        return JobActions(self.app, readonly=self.readonly)

    def action_interrupt(self) -> None:
        if self.jobs is not None:
            self._actions.interrupt(self.jobs)
        else:
            self._actions.refused("interrupt")

    def action_cancel(self) -> None:
        if self.jobs is not None:
            self._actions.cancel(self.jobs, self.selected)
        else:
            self._actions.refused("cancel")

    def action_clear(self) -> None:
        if self.jobs is not None:
            self._actions.clear(self.jobs)
        else:
            self._actions.refused("clear queue")

    def action_free(self) -> None:
        if self.jobs is not None:
            self._actions.free(self.jobs)
        else:
            self._actions.refused("free VRAM")

    def action_next_service(self) -> None:
        names = [s.service for s in self.report.services]
        if len(names) > 1 and self.service in names:
            self.service = names[(names.index(self.service) + 1) % len(names)]
            self.show(self.report)

    def action_close(self) -> None:
        self.dismiss(None)


def jobs_commands(app: Any) -> Iterable[SystemCommand]:
    """The palette's queue actions, per ComfyUI service with something to act on (none
    under --readonly)."""
    if getattr(app, "readonly", False):
        return
    report = app.stack.snapshot.jobs
    if report is None:
        return
    acts = JobActions(app, readonly=False)
    for sj in report.services:
        who = _who(sj)
        if sj.running is not None:
            yield SystemCommand(f"Jobs: interrupt on {who}",
                                f"interrupt job {short_id(sj.running.prompt_id)} "
                                f"on {who} (asks first)",
                                lambda sj=sj: acts.interrupt(sj))
        if sj.pending:
            yield SystemCommand(f"Jobs: clear the queue of {who}",
                                f"remove the {len(sj.pending)} pending jobs of {who} "
                                "(asks first)", lambda sj=sj: acts.clear(sj))
            yield SystemCommand(f"Jobs: cancel a job on {who}",
                                f"open the jobs view of {who}; x cancels the selected job",
                                lambda sj=sj: app.push_screen(JobsScreen(
                                    report, sj.service, readonly=app.readonly)))
        yield SystemCommand(f"Jobs: free VRAM on {who}",
                            f"unload the models of {who} (asks first)",
                            lambda sj=sj: acts.free(sj))
