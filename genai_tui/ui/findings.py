"""The findings bar: the conclusions, most severe first, each with the key that fixes it,
and the words every face of the dashboard uses for a finding (its kind, a short title, what
fixes it), shared with the findings view (screens/findings.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from rich.text import Text
from textual.binding import Binding
from textual.events import Click
from textual.message import Message
from textual.widgets import Static

from genai_tui.model import Finding, Severity
from genai_tui.safety import one_line
from genai_tui.ui import stylesheets
from genai_tui.ui.render import update_if_changed

# the dashboard's key for each machine `fix` (Finding.fix); fixes with no key show no hint
FIX_KEYS = {"restart": "r", "unify": "u", "read_logs": "l"}
#: the app action (binding id in app.KEYS) behind each fix that has a key
FIX_ACTIONS = {"restart": "restart", "unify": "unify", "read_logs": "logs"}
#: fixes that change something: no hint and no key for them under --readonly
MUTATING_FIXES = frozenset({"restart", "unify", "unpause", "compose_up"})
#: what each fix does, in words (the findings view: "r restart comfyui-qwen")
FIX_WORDS = {
    "restart": "restart",
    "unpause": "unpause (docker unpause)",
    "unify": "unify the token copies",
    "compose_up": "create it: docker compose up -d",
    "read_logs": "read the logs of",
    "check_docker": "check the Docker engine (systemctl status docker, DOCKER_HOST)",
    "set_container": "name its container in the config (`container = …`)",
    "chmod": "make the file private (chmod 600)",
    "publish_port": "publish the URL's port (ports: in compose), or fix the URL",
    "interrupt": "interrupt the running job of",
    "free_vram": "free the VRAM held by",
    "set_init": "run it with an init (init: true in compose) so SIGTERM stops it",
}

#: the kinds of findings, in the order the view lists them: whoever can reach the API
#: first, then the credential, then the containers, then ports, then resources
KINDS = ("security", "credentials", "containers", "ports", "jobs", "resources", "other")
KIND_TITLES = {
    "security": "Security: who can use the API",
    "credentials": "Credentials: the token and its copies",
    "containers": "Containers",
    "ports": "Ports and probes",
    "jobs": "Jobs and VRAM",
    "resources": "GPU and host resources",
    "other": "Other",
}
#: code -> (kind, short human title for the "+N more" line); unknown codes are "other"
CODES: dict[str, tuple[str, str]] = {
    "auth_disabled": ("security", "API open to anyone"),
    "login_not_loaded": ("security", "ComfyUI-Login not loaded"),
    "password_missing": ("security", "no PASSWORD: first visitor picks it"),
    "token_rejected": ("credentials", "token refused"),
    "token_stale": ("credentials", "server on an old token"),
    "token_drift": ("credentials", "token drift"),
    "token_file_missing": ("credentials", "token copy missing"),
    "token_file_problem": ("credentials", "token file problem"),
    "world_readable": ("credentials", "world-readable token file"),
    "docker_unreachable": ("containers", "Docker unreachable"),
    "container_missing": ("containers", "container missing"),
    "never_started": ("containers", "never started"),
    "lookalike_containers": ("containers", "look-alike containers"),
    "restart_loop": ("containers", "restart loop"),
    "oom_killed": ("containers", "OOM-killed"),
    "container_exited": ("containers", "stopped"),
    "paused": ("containers", "paused"),
    "health_starting_long": ("containers", "slow start"),
    "starting": ("containers", "starting"),
    "restarting": ("containers", "restarting"),
    "restart_failed": ("containers", "restart failed"),
    "stop_ignores_sigterm": ("containers", "stop ignores SIGTERM"),
    "unhealthy": ("containers", "unhealthy"),
    "healthcheck_hits_auth": ("containers", "healthcheck hits auth"),
    "port_unreachable": ("ports", "port not answering"),
    "port_not_published": ("ports", "port not published"),
    "orchestrator_backend_down": ("ports", "backend down"),
    "job_stuck": ("jobs", "job stuck"),
    "job_failed": ("jobs", "job failed"),
    "queue_backlog": ("jobs", "queue backlog"),
    "vram_idle_hold": ("jobs", "idle service holds VRAM"),
    "gpu_memory_high": ("resources", "GPU memory high"),
    "host_memory_high": ("resources", "host memory high"),
    "gpu_unavailable": ("resources", "GPU stats unavailable"),
}

STYLE = {
    Severity.CRITICAL: ("✖", "bold red"),
    Severity.WARNING: ("▲", "bold yellow"),
    Severity.INFO: ("●", "cyan"),
}


def kind_of(code: str) -> str:
    return CODES.get(code, ("other", ""))[0]


def title_of(code: str) -> str:
    """A few words for a code; an unknown code reads as words, never as `a_code`."""
    return CODES.get(code, ("", ""))[1] or one_line(code, 40).replace("_", " ")


def grouped(findings: list[Finding]) -> list[tuple[str, list[Finding]]]:
    """(kind, findings) in KINDS order, each group most severe first (stable otherwise):
    "API open to anyone" comes before a port that does not answer, whatever the order
    the engine produced."""
    groups: dict[str, list[Finding]] = {}
    for f in findings:
        groups.setdefault(kind_of(f.code), []).append(f)
    return [(kind, sorted(groups[kind], key=lambda f: f.severity.rank))
            for kind in KINDS if kind in groups]


def ordered(findings: list[Finding]) -> list[Finding]:
    """The view's order, flattened: by kind (security first), then severity."""
    return [f for _kind, items in grouped(findings) for f in items]


def hint_key(f: Finding, keys: Mapping[str, str] | None = None, *,
             readonly: bool = False) -> str | None:
    """The key shown beside a finding (the one in force), or None: no key fixes it, or it
    would change something under --readonly."""
    if not f.fix or (readonly and f.fix in MUTATING_FIXES):
        return None
    return (keys if keys is not None else FIX_KEYS).get(f.fix)


def more_words(hidden: list[Finding]) -> str:
    """"token drift, 2 unhealthy": the left-out findings by title, counted, in order."""
    counts = Counter(title_of(f.code) for f in hidden)
    return ", ".join(f"{n} {title}" if n > 1 else title for title, n in counts.items())


def render_findings(findings: list[Finding], *, max_lines: int, services: int,
                    waiting: bool = False, keys: Mapping[str, str] | None = None,
                    readonly: bool = False, view_key: str | None = None) -> Text:
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
        key = hint_key(f, keys, readonly=readonly)
        if key:
            text.append(f"[{one_line(key, 12)}] ", style="bold cyan")
        text.append(f"{icon} ", style=style)
        text.append(one_line(f.message, 300))
    hidden = findings[len(shown):]
    if hidden:
        text.append("\n")
        text.append(f"+{len(hidden)} more: {more_words(hidden)}", style="dim")
        if view_key:
            text.append(f"  ({one_line(view_key, 12)} or Enter here: all findings)",
                        style="dim")
    return text


class FindingsBar(Static, can_focus=True):
    """Focusable: Enter (or a click) opens the findings view, where each key acts on the
    finding chosen, not on the containers table's row."""

    DEFAULT_CSS = stylesheets.read("findings.tcss")
    BINDINGS = [Binding("enter", "open", "All findings", show=False)]

    class Open(Message):
        """Asked for the findings view (Enter or a click on the bar)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self.max_lines = 5
        self.findings: list[Finding] = []
        #: fix -> key in force; set by the app from its bindings (keymap applied)
        self.keys: Mapping[str, str] | None = None
        self.readonly = False
        self.view_key: str | None = None
        self._services = 0

    def on_mount(self) -> None:
        self.update(render_findings([], max_lines=self.max_lines, services=0, waiting=True))

    def show(self, findings: list[Finding], services: int) -> None:
        self.findings = findings
        self._services = services
        worst = min((f.severity.rank for f in findings), default=Severity.INFO.rank)
        self.set_class(worst == 0, "-critical")
        self.set_class(worst == 1, "-warning")
        self.set_class(worst == 2, "-calm")
        update_if_changed(self, render_findings(
            findings, max_lines=self.max_lines, services=services, keys=self.keys,
            readonly=self.readonly, view_key=self.view_key))

    def action_open(self) -> None:
        self.post_message(self.Open())

    def on_click(self, event: Click) -> None:
        event.stop()
        self.post_message(self.Open())
