"""Stack configuration: a TOML file (plus `${VAR:-default}` from the environment and a
`.env` beside it); with no file, the reference stack's defaults.

The TOML names are a public interface. Every mistake in a file becomes one `ConfigError`
naming the file, the line or key, and what was expected — never a traceback.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from dotenv import dotenv_values

SERVICE_KINDS = ("comfyui", "orchestrator", "http")
RUNTIMES = ("docker", "process")
TOKEN_FORMATS = ("password_file", "hash_file", "env", "json", "raw_env")
FORMATS_WITH_KEY = ("env", "raw_env", "json")
#: actions whose keys `[keys]` may change (dashboard, then log panel)
KEY_ACTIONS = (
    "quit", "help", "restart", "restart_all", "logs", "logs_all", "probe", "unify", "refresh",
    "view_logs", "view_probes", "view_tokens", "view_gpu", "view_host",
    "filter", "next_match", "prev_match", "clear_filter", "follow", "timestamps", "wrap", "save",
    "timeline", "findings", "jobs", "view_jobs", "discover",
)
#: `[[alerts]] on` values and the severities an alert can be chosen for
ALERT_STATES = ("open", "close")
ALERT_SEVERITIES = ("critical", "warning", "info")
#: the most we read of a config file or of the `.env` beside it
MAX_FILE_BYTES = 1 << 20
#: the largest number or integer a setting may hold (keeps timeouts and buffer sizes within
#: what the C layer below accepts)
MAX_NUMBER = 1_000_000_000


class ConfigError(Exception):
    """A configuration mistake, phrased for the admin who has to fix it."""

    def __init__(self, source: str, where: str | None, message: str) -> None:
        # every part may hold text from the file or its name: one safe line, always
        self.source = source = _safe(source, 500)
        self.where = where = _safe(where, 300) if where else None
        self.message = message = _safe(message, 600)
        loc = f"{source}: {where}: " if where else f"{source}: "
        super().__init__(loc + message)


@dataclass(frozen=True)
class ServiceConfig:
    name: str
    url: str
    kind: str = "comfyui"
    container: str | None = None  # docker runtime: container name or compose service name
    auth: bool = False
    health_path: str = "/health"
    runtime: str = "docker"
    # process runtime
    process_pattern: str | None = None  # regex matched against the command line
    restart_command: str | None = None
    log_file: Path | None = None
    #: docker runtime: the compose project its container belongs to (default: [docker])
    project: str | None = None

    @property
    def container_name(self) -> str:
        return self.container or self.name

    @property
    def host_port(self) -> tuple[str, int]:
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return parts.hostname or "127.0.0.1", port


@dataclass(frozen=True)
class TokenLocation:
    name: str
    path: Path
    format: str
    key: str | None = None
    #: for env files: whether Docker Compose reads it (so `$` must be single-quoted)
    compose: bool = True
    #: allow unify to write through a symlink that leaves the config's folder tree or
    #: lands in a folder owned by another user (never through a dangling one)
    follow_symlinks: bool = False


@dataclass(frozen=True)
class TokensConfig:
    canonical: str | None = None
    restart_after_unify: tuple[str, ...] = ()
    locations: tuple[TokenLocation, ...] = ()
    backup_dir: Path = Path(".genai-tui/backups")
    audit_log: Path = Path(".genai-tui/audit.jsonl")
    #: the stack's private state folder: the unify lock and the fingerprint key
    state_dir: Path = Path(".genai-tui")
    #: backups kept per location; older ones are pruned after a unify
    keep_backups: int = 10
    #: the config's folder: a token symlink must resolve inside it (None: no limit known)
    root: Path | None = None


@dataclass(frozen=True)
class DockerConfig:
    host: str | None = None
    timeout: float = 10.0
    resync_interval: float = 60.0
    restart_loop_count: int = 3
    restart_loop_window: float = 120.0
    health_starting_max: float = 300.0
    stop_timeout: int = 10
    #: seconds a just-started container's port may stay silent before it is an alarm
    #: (its healthcheck's start period wins when it has one)
    start_grace: float = 30.0
    #: the compose project whose containers are the stack's (a staging copy's look-alikes
    #: are never chosen); per service: `[[services]] project`
    project: str | None = None


@dataclass(frozen=True)
class ProbeConfig:
    interval: float = 5.0
    connect_timeout: float = 1.0
    read_timeout: float = 3.0


@dataclass(frozen=True)
class LogConfig:
    tail: int = 200
    buffer_lines: int = 5000
    max_line_bytes: int = 4096
    flush_interval: float = 0.1


@dataclass(frozen=True)
class GpuConfig:
    interval: float = 2.0
    memory_warn_pct: float = 90.0


@dataclass(frozen=True)
class HostConfig:
    interval: float = 2.0
    disks: tuple[Path, ...] = ()
    memory_warn_pct: float = 90.0


@dataclass(frozen=True)
class JobsConfig:
    """The ComfyUI queue watch (issue #14): thresholds of the job findings, in seconds
    unless named otherwise; `safety_poll` is the slowest detail poll while a websocket
    says nothing (and the poll interval where there is no websocket)."""

    enabled: bool = True
    #: long: a job queued by a browser shows its steps only in the log, and `docker logs`
    #: delivers a tqdm bar only when it ends (the daemon splits on "\n", the bar uses "\r")
    stuck_after: float = 600.0
    backlog_after: float = 600.0
    idle_hold_after: float = 900.0
    idle_hold_gib: float = 4.0
    safety_poll: float = 30.0
    recent: int = 20


@dataclass(frozen=True)
class HistoryConfig:
    """The event store (genai_tui.engine.history): on by default under
    `$XDG_STATE_HOME/genai-tui/` (one file per config); bounded by age and size."""

    enabled: bool = True
    retention_days: float = 30.0
    max_mb: float = 64.0
    path: Path | None = None  # None: the per-config default under $XDG_STATE_HOME


@dataclass(frozen=True)
class AlertConfig:
    """One `[[alerts]]` hook: a command (argv, the payload JSON on stdin) or a webhook
    URL (POSTed JSON), for findings of `severity` or worse opening and/or closing."""

    name: str
    command: tuple[str, ...] = ()
    webhook: str | None = None
    severity: str = "critical"
    on: tuple[str, ...] = ("open", "close")
    timeout: float = 5.0
    #: deliveries per hook per minute at most (the rest are counted, not sent)
    per_minute: int = 6
    #: the same (code, service, open/close) is not sent again within this many seconds
    dedup_seconds: float = 300.0


@dataclass(frozen=True)
class HostEntry:
    """One `[[hosts]]` of the fleet view: reached with the system's `ssh` (so
    ~/.ssh/config, agents, ProxyJump and known_hosts apply), running genai-tui there."""

    name: str
    ssh: str  # the destination: [user@]host, or an alias of ~/.ssh/config
    port: int | None = None
    identity: Path | None = None
    #: the remote config path (None: the remote genai-tui's own default)
    config: str | None = None
    #: the remote genai-tui, as argv words (a venv's path, `--readonly` to pin it there)
    command: tuple[str, ...] = ("genai-tui",)
    #: an ssh_config file of its own (`ssh -F`), instead of ~/.ssh/config
    ssh_config: Path | None = None
    readonly: bool = False


@dataclass(frozen=True)
class FleetConfig:
    hosts: tuple[HostEntry, ...] = ()
    #: the machine the dashboard runs on is a host of the fleet too
    local: bool = True
    #: a host with no frame for this long is stale
    stale_after: float = 15.0


@dataclass(frozen=True)
class Config:
    services: tuple[ServiceConfig, ...]
    docker: DockerConfig = field(default_factory=DockerConfig)
    tokens: TokensConfig = field(default_factory=TokensConfig)
    probes: ProbeConfig = field(default_factory=ProbeConfig)
    logs: LogConfig = field(default_factory=LogConfig)
    gpu: GpuConfig = field(default_factory=GpuConfig)
    host: HostConfig = field(default_factory=HostConfig)
    keys: Mapping[str, str] = field(default_factory=dict)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    alerts: tuple[AlertConfig, ...] = ()
    fleet: FleetConfig = field(default_factory=FleetConfig)
    path: Path | None = None  # None = built-in defaults
    base_dir: Path = field(default_factory=Path.cwd)

    @property
    def source(self) -> str:
        return str(self.path) if self.path else "built-in defaults (reference stack)"

    def service(self, name: str) -> ServiceConfig | None:
        return next((s for s in self.services if s.name == name), None)

    def with_services(self, services: tuple[ServiceConfig, ...]) -> Config:
        return replace(self, services=services)


# ------------------------------------------------------------------ defaults

REFERENCE_SERVICES = (
    ServiceConfig("comfyui-qwen", "http://127.0.0.1:${COMFYUI_PORT:-8188}", "comfyui",
                  container="comfyui-qwen", auth=True),
    ServiceConfig("flux-1-dev", "http://127.0.0.1:${FLUX_PORT:-8189}", "comfyui",
                  container="coursia-flux-1-dev", auth=True),
    ServiceConfig("stable-diffusion-35", "http://127.0.0.1:${SD35_PORT:-8190}", "http",
                  container="coursia-sd35", health_path="/health"),
    ServiceConfig("orchestrator", "http://127.0.0.1:${GENAI_PORT_ORCHESTRATOR:-8193}",
                  "orchestrator", container="coursia-orchestrator", health_path="/health"),
)

_QWEN = "docker-configurations/services/comfyui-qwen"
REFERENCE_TOKEN_LOCATIONS = (
    TokenLocation("secrets", Path(".secrets/qwen-api-user.token"), "hash_file"),
    TokenLocation("docker-secrets", Path("docker-configurations/.secrets/qwen-api-user.token"),
                  "hash_file"),
    TokenLocation("password", Path(f"{_QWEN}/workspace/login/PASSWORD"), "password_file"),
    TokenLocation("env-main", Path(".env"), "env", key="COMFYUI_API_TOKEN"),
    TokenLocation("env-raw", Path(".env"), "raw_env", key="COMFYUI_RAW_TOKEN"),
    TokenLocation("env-service", Path(f"{_QWEN}/.env"), "env", key="COMFYUI_BEARER_TOKEN"),
    TokenLocation("conf", Path(".secrets/comfyui_auth_tokens.conf"), "json", key="bcrypt_hash"),
)


# ------------------------------------------------------------------ discovery


def discover(cli_path: str | os.PathLike[str] | None = None,
             env: Mapping[str, str] | None = None,
             cwd: Path | None = None) -> Path | None:
    """The config file to use: --config, $GENAI_TUI_CONFIG, ./genai-tui.toml, XDG, else None."""
    env = os.environ if env is None else env
    cwd = cwd or Path.cwd()
    if cli_path:
        return Path(cli_path)
    if env.get("GENAI_TUI_CONFIG"):
        return Path(env["GENAI_TUI_CONFIG"])
    local = cwd / "genai-tui.toml"
    if local.is_file():
        return local
    xdg = env.get("XDG_CONFIG_HOME")
    if not xdg:
        try:
            xdg = str(Path(env.get("HOME", "~")).expanduser() / ".config")
        except (RuntimeError, KeyError, ValueError):  # no home directory: no user config
            return None
    user = Path(xdg) / "genai-tui" / "config.toml"
    if user.is_file():
        return user
    return None


def load(cli_path: str | os.PathLike[str] | None = None,
         env: Mapping[str, str] | None = None,
         cwd: Path | None = None) -> Config:
    """Find and load the configuration; raises ConfigError."""
    env = dict(os.environ if env is None else env)
    path = discover(cli_path, env, cwd)
    if path is None:
        try:
            base = (cwd or Path.cwd()).resolve()
        except (OSError, RuntimeError) as exc:
            raise ConfigError("built-in defaults", None,
                              f"cannot resolve the working folder: {_reason(exc)}") from None
        return _build({}, env_vars=_with_dotenv(env, base), source="built-in defaults",
                      path=None, base_dir=base, text="")
    return load_file(path, env)


def load_file(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Load one config file (and the `.env` beside it); raises ConfigError."""
    source = str(path)
    raw = _read_bounded(Path(path))
    if raw is None:
        raise ConfigError(source, None, "file not found")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(source, None, "cannot read: not UTF-8 text") from None
    data = _parse_toml(text, source)
    try:
        base = Path(path).resolve().parent
    except (OSError, RuntimeError) as exc:
        raise ConfigError(source, None, f"cannot resolve the path: {_reason(exc)}") from None
    env_vars = _with_dotenv(dict(os.environ if env is None else env), base)
    return _build(data, env_vars=env_vars, source=source, path=path.resolve(), base_dir=base,
                  text=text)


# ------------------------------------------------------------------ reading

_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def _read_bounded(path: Path, *, quiet: bool = False) -> bytes | None:
    """The bytes of a regular file of at most MAX_FILE_BYTES; None when it does not exist.

    Opened with O_NONBLOCK so a FIFO or device never blocks, then checked with fstat: anything
    but a regular file, or a larger file, is a ConfigError naming the path. With `quiet`, a
    file that cannot be opened or read (permissions, I/O) is None instead of an error.
    """
    source = str(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except ValueError:  # a NUL byte in the path
        raise ConfigError(source, None, "the path contains a NUL byte") from None
    except OSError as exc:
        if quiet:
            return None
        raise ConfigError(source, None, f"cannot read: {_reason(exc)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _FILE_KINDS if test(st.st_mode)), "special")
            raise ConfigError(source, None, f"is not a regular file (it is {kind})")
        too_large = f"file too large (over {MAX_FILE_BYTES // 1024} KiB)"
        if st.st_size > MAX_FILE_BYTES:
            raise ConfigError(source, None, too_large)
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, 65536):
            total += len(chunk)
            if total > MAX_FILE_BYTES:
                raise ConfigError(source, None, too_large)
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        if quiet:
            return None
        raise ConfigError(source, None, f"cannot read: {_reason(exc)}") from None
    finally:
        os.close(fd)


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    """tomllib.loads with every failure (syntax, nesting, huge numbers) as a ConfigError."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, _toml_where(str(exc)), f"TOML syntax error: {_toml_what(exc)}")\
            from None
    except RecursionError:
        line = _deep_line(text)
        raise ConfigError(source, f"line {line}" if line else None,
                          "TOML syntax error: arrays or inline tables nested too deeply")\
            from None
    except ValueError:  # Python's limit on digits in an integer
        line = next((i + 1 for i, ln in enumerate(text.splitlines())
                     if re.search(r"\d(?:_?\d){4000,}", ln)), None)
        raise ConfigError(source, f"line {line}" if line else None,
                          "TOML syntax error: an integer with too many digits") from None


def _deep_line(text: str, limit: int = 100) -> int | None:
    """Best-effort line where brackets first nest deeper than `limit`."""
    depth = 0
    for i, line in enumerate(text.splitlines()):
        for ch in line:
            depth += 1 if ch in "[{" else -1 if ch in "]}" else 0
            if depth > limit:
                return i + 1
    return None


# ------------------------------------------------------------------ building


def _with_dotenv(env: dict[str, str], base: Path) -> dict[str, str]:
    """Environment for `${VAR}` in the config: a `.env` beside it, overridden by the real env.

    A `.env` that is not a regular file, or is too large, is a ConfigError (never a hang); one
    that cannot be read or decoded is skipped (the tokens panel reports it).
    """
    merged: dict[str, str] = {}
    raw = _read_bounded(base / ".env", quiet=True)
    if raw is not None:
        try:
            values = dotenv_values(stream=io.StringIO(raw.decode("utf-8-sig")))
            merged.update({k: v for k, v in values.items() if v is not None})
        except (UnicodeDecodeError, ValueError):
            pass  # a broken .env is reported by the tokens panel, not fatal here
    merged.update(env)
    return merged


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def _interpolate(value: str, env: Mapping[str, str]) -> str:
    return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)


class _Reader:
    """Typed access to one TOML table, recording the dotted path for messages."""

    def __init__(self, table: Any, where: str, ctx: _Ctx) -> None:
        if not isinstance(table, dict):
            ctx.fail(where, f"expected a table, got {_tname(table)}")
        self.table = table
        self.where = where
        self.ctx = ctx
        self.seen: set[str] = set()

    def _key(self, key: str) -> str:
        if not _BARE_KEY.match(key):
            key = '"' + key + '"'
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, types: tuple[type, ...], default: Any, expected: str) -> Any:
        self.seen.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, bool) and bool not in types:
            self.ctx.fail(self._key(key), f"expected {expected}, got a boolean")
        if not isinstance(value, types):
            self.ctx.fail(self._key(key), f"expected {expected}, got {_tname(value)}")
        return value

    def string(self, key: str, default: str | None = None, *, required: bool = False,
               choices: tuple[str, ...] | None = None) -> str | None:
        if required and key not in self.table:
            self.ctx.fail(self._key(key), "is required (a string)")
        value = self.get(key, (str,), default, "a string")
        if value is not None and key in self.table:
            value = self.ctx.interpolate(self._key(key), value)
            if choices and value not in choices:
                shown = self.ctx.show(self._key(key), value)
                if self._key(key) in self.ctx.origins:
                    shown = f"({shown})"
                self.ctx.fail(self._key(key), f"unknown value {shown}; expected one of "
                              + ", ".join(choices))
            if not value.strip():
                self.ctx.fail(self._key(key), "must not be empty")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.get(key, (int, float), default, "a number")
        if not (isinstance(value, int) or math.isfinite(value)) or not 0 < value <= MAX_NUMBER:
            self.ctx.fail(self._key(key), f"expected a number above 0 and at most {MAX_NUMBER}, "
                          f"got {_short_number(value)}")
        return float(value)

    def integer(self, key: str, default: int, *, minimum: int = 1) -> int:
        value = self.get(key, (int,), default, "an integer")
        if not minimum <= value <= MAX_NUMBER:
            self.ctx.fail(self._key(key), f"expected an integer >= {minimum} and at most "
                          f"{MAX_NUMBER}, got {_short_number(value)}")
        return int(value)

    def boolean(self, key: str, default: bool) -> bool:
        return bool(self.get(key, (bool,), default, "true or false"))

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key, (list,), [], "a list of strings")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.ctx.fail(f"{self._key(key)}[{i}]", f"expected a string, got {_tname(item)}")
        return tuple(self.ctx.interpolate(f"{self._key(key)}[{i}]", v)
                     for i, v in enumerate(value))

    def table_list(self, key: str) -> list[Any]:
        value = self.get(key, (list,), [], "an array of tables ([[...]])")
        return value

    def done(self) -> None:
        unknown = [k for k in self.table if k not in self.seen]
        if unknown:
            known = ", ".join(sorted(self.seen))
            self.ctx.fail(self._key(unknown[0]), f"unknown key; expected one of: {known}")


@dataclass
class _Ctx:
    source: str
    text: str
    env: Mapping[str, str]
    #: dotted key -> the string as written, for values that went through `${VAR}`
    origins: dict[str, str] = field(default_factory=dict)

    def fail(self, where: str, message: str) -> NoReturn:
        line = _find_line(self.text, where)
        raise ConfigError(self.source, f"line {line}: {where}" if line else where, message)

    def interpolate(self, where: str, raw: str) -> str:
        """`raw` with `${VAR}` filled in, remembering that `where` holds a substituted value;
        a NUL byte (written or substituted) is refused here, before any path or URL use."""
        value = _interpolate(raw, self.env)
        if _VAR.search(raw):
            self.origins[where] = raw
        if "\0" in value:
            self.fail(where, f"must not contain a NUL byte, got {self.show(where, value)}")
        return value

    def show(self, where: str, value: str) -> str:
        """How an error may show the value at `where`: quoted (and escaped) when written
        literally; never when it came from `${VAR}`, whose name is shown instead."""
        raw = self.origins.get(where)
        if raw is None:
            return _quote(value)
        whole = _VAR.fullmatch(raw)
        if whole:
            return f"the value of ${{{whole.group(1)}}}"
        names = ", ".join(dict.fromkeys(f"${{{m.group(1)}}}" for m in _VAR.finditer(raw)))
        return f"{_quote(raw)} with {names} filled in (value not shown)"

    def path(self, where: str, value: str, base_dir: Path) -> Path:
        """A path setting: `~` expanded, relative to the config's folder."""
        if "\0" in value:
            self.fail(where, f"must not contain a NUL byte, got {self.show(where, value)}")
        try:
            q = Path(value).expanduser()
        except (RuntimeError, KeyError, ValueError):
            self.fail(where, f"expected a path, got {self.show(where, value)}: no such user "
                      "or no home directory to expand ~ with")
        return q if q.is_absolute() else base_dir / q

    def url(self, where: str, url: str) -> str:
        """A service URL: http(s), a host, a valid port, no blanks or control characters."""
        ok = (bool(re.match(r"^https?://[^/\s]+", url)) and url.isprintable()
              and not any(c.isspace() for c in url))
        if ok:
            try:
                parts = urlsplit(url)
                ok = bool(parts.hostname) and (parts.port is None or 0 < parts.port <= 65535)
            except ValueError:  # a bad port or IPv6 literal
                ok = False
        if not ok:
            self.fail(where, "expected an http(s):// URL with a host and an optional port "
                      f"1-65535, got {self.show(where, url)}")
        return url


def _build(data: dict[str, Any], *, env_vars: Mapping[str, str], source: str,
           path: Path | None, base_dir: Path, text: str) -> Config:
    ctx = _Ctx(source, text, env_vars)
    top = _Reader(data, "", ctx)

    def rel(p: str, where: str = "path") -> Path:
        return ctx.path(where, p, base_dir)

    d = _Reader(top.get("docker", (dict,), {}, "a table"), "docker", ctx)
    docker = DockerConfig(
        host=d.string("host"),
        timeout=d.number("timeout", DockerConfig.timeout),
        resync_interval=d.number("resync_interval", DockerConfig.resync_interval),
        restart_loop_count=d.integer("restart_loop_count", DockerConfig.restart_loop_count,
                                     minimum=2),
        restart_loop_window=d.number("restart_loop_window", DockerConfig.restart_loop_window),
        health_starting_max=d.number("health_starting_max", DockerConfig.health_starting_max),
        stop_timeout=d.integer("stop_timeout", DockerConfig.stop_timeout, minimum=0),
        start_grace=d.number("start_grace", DockerConfig.start_grace),
        project=d.string("project"),
    )
    d.done()

    services: list[ServiceConfig] = []
    if "services" in data:
        raw_services = top.table_list("services")
        if not raw_services:
            ctx.fail("services", "expected at least one [[services]] table")
        for i, raw in enumerate(raw_services):
            s = _Reader(raw, f"services[{i}]", ctx)
            name = s.string("name", required=True)
            assert name is not None
            runtime = s.string("runtime", "docker", choices=RUNTIMES) or "docker"
            url = ctx.url(f"services[{i}].url", s.string("url", required=True) or "")
            log_file = s.string("log_file")
            svc = ServiceConfig(
                name=name,
                url=url.rstrip("/"),
                kind=s.string("kind", "comfyui", choices=SERVICE_KINDS) or "comfyui",
                container=s.string("container"),
                auth=s.boolean("auth", False),
                health_path=s.string("health_path", "/health") or "/health",
                runtime=runtime,
                process_pattern=s.string("process_pattern"),
                restart_command=s.string("restart_command"),
                log_file=rel(log_file, f"services[{i}].log_file") if log_file else None,
                project=s.string("project"),
            )
            if svc.process_pattern:
                _check_regex(ctx, f"services[{i}].process_pattern", svc.process_pattern)
            if not svc.health_path.startswith("/"):
                ctx.fail(f"services[{i}].health_path", "expected a path starting with /, got "
                         + ctx.show(f"services[{i}].health_path", svc.health_path))
            s.done()
            if any(o.name == svc.name for o in services):
                ctx.fail(f"services[{i}].name", "duplicate service name "
                         + ctx.show(f"services[{i}].name", svc.name))
            services.append(svc)
    else:
        services = []
        for ref in REFERENCE_SERVICES:
            where = f"services (built-in {ref.name}).url"
            services.append(replace(ref, url=ctx.url(where, ctx.interpolate(where, ref.url))))
    names = {s.name for s in services}

    t = _Reader(top.get("tokens", (dict,), {}, "a table"), "tokens", ctx)
    locations: list[TokenLocation] = []
    if "locations" in t.table:
        for i, raw in enumerate(t.table_list("locations")):
            r = _Reader(raw, f"tokens.locations[{i}]", ctx)
            lname = r.string("name", required=True) or ""
            fmt = r.string("format", required=True, choices=TOKEN_FORMATS) or ""
            key = r.string("key")
            if fmt in FORMATS_WITH_KEY and not key:
                ctx.fail(f"tokens.locations[{i}].key", f"is required for format {fmt!r}")
            if fmt not in FORMATS_WITH_KEY and key:
                ctx.fail(f"tokens.locations[{i}].key", f"is not used by format {fmt!r}")
            loc = TokenLocation(lname, rel(r.string("path", required=True) or "",
                                           f"tokens.locations[{i}].path"), fmt, key,
                                compose=r.boolean("compose", True),
                                follow_symlinks=r.boolean("follow_symlinks", False))
            r.done()
            if any(o.name == lname for o in locations):
                ctx.fail(f"tokens.locations[{i}].name", "duplicate location name "
                         + ctx.show(f"tokens.locations[{i}].name", lname))
            locations.append(loc)
    else:
        t.seen.add("locations")
        locations = [replace(loc, path=base_dir / loc.path) for loc in REFERENCE_TOKEN_LOCATIONS]
    canonical = t.string("canonical", "secrets" if "locations" not in t.table else None)
    if canonical is None and locations:
        canonical = locations[0].name
    if canonical is not None and canonical not in {loc.name for loc in locations}:
        ctx.fail("tokens.canonical", ctx.show("tokens.canonical", canonical)
                 + " is not the name of a [[tokens.locations]]")
    restart_after = t.strings("restart_after_unify") if "restart_after_unify" in t.table else (
        tuple(n for n in ("comfyui-qwen",) if n in names))
    for i, n in enumerate(restart_after):
        if n not in names:
            ctx.fail(f"tokens.restart_after_unify[{i}]",
                     ctx.show(f"tokens.restart_after_unify[{i}]", n)
                     + " is not a configured service")
    tokens = TokensConfig(
        canonical=canonical,
        restart_after_unify=restart_after,
        locations=tuple(locations),
        backup_dir=rel(t.string("backup_dir", ".genai-tui/backups") or "", "tokens.backup_dir"),
        audit_log=rel(t.string("audit_log", ".genai-tui/audit.jsonl") or "", "tokens.audit_log"),
        state_dir=rel(t.string("state_dir", ".genai-tui") or "", "tokens.state_dir"),
        keep_backups=t.integer("keep_backups", TokensConfig.keep_backups, minimum=1),
        root=base_dir,
    )
    t.done()

    p = _Reader(top.get("probes", (dict,), {}, "a table"), "probes", ctx)
    probes = ProbeConfig(
        interval=p.number("interval", ProbeConfig.interval),
        connect_timeout=p.number("connect_timeout", ProbeConfig.connect_timeout),
        read_timeout=p.number("read_timeout", ProbeConfig.read_timeout),
    )
    p.done()

    lg = _Reader(top.get("logs", (dict,), {}, "a table"), "logs", ctx)
    logs = LogConfig(
        tail=lg.integer("tail", LogConfig.tail, minimum=0),
        buffer_lines=lg.integer("buffer_lines", LogConfig.buffer_lines, minimum=10),
        max_line_bytes=lg.integer("max_line_bytes", LogConfig.max_line_bytes, minimum=80),
        flush_interval=lg.number("flush_interval", LogConfig.flush_interval),
    )
    lg.done()

    g = _Reader(top.get("gpu", (dict,), {}, "a table"), "gpu", ctx)
    gpu = GpuConfig(interval=g.number("interval", GpuConfig.interval),
                    memory_warn_pct=g.number("memory_warn_pct", GpuConfig.memory_warn_pct))
    g.done()

    h = _Reader(top.get("host", (dict,), {}, "a table"), "host", ctx)
    host = HostConfig(interval=h.number("interval", HostConfig.interval),
                      disks=tuple(rel(x, f"host.disks[{i}]")
                                  for i, x in enumerate(h.strings("disks"))),
                      memory_warn_pct=h.number("memory_warn_pct", HostConfig.memory_warn_pct))
    h.done()

    jb = _Reader(top.get("jobs", (dict,), {}, "a table"), "jobs", ctx)
    jobs = JobsConfig(
        enabled=jb.boolean("enabled", JobsConfig.enabled),
        stuck_after=jb.number("stuck_after", JobsConfig.stuck_after),
        backlog_after=jb.number("backlog_after", JobsConfig.backlog_after),
        idle_hold_after=jb.number("idle_hold_after", JobsConfig.idle_hold_after),
        idle_hold_gib=jb.number("idle_hold_gib", JobsConfig.idle_hold_gib),
        safety_poll=jb.number("safety_poll", JobsConfig.safety_poll),
        recent=jb.integer("recent", JobsConfig.recent, minimum=1),
    )
    if jobs.recent > 1000:
        ctx.fail("jobs.recent", f"expected an integer >= 1 and at most 1000, got {jobs.recent}")
    jb.done()

    hi = _Reader(top.get("history", (dict,), {}, "a table"), "history", ctx)
    history_path = hi.string("path")
    history = HistoryConfig(
        enabled=hi.boolean("enabled", HistoryConfig.enabled),
        retention_days=hi.number("retention_days", HistoryConfig.retention_days),
        max_mb=hi.number("max_mb", HistoryConfig.max_mb),
        path=rel(history_path, "history.path") if history_path else None)
    hi.done()
    alerts = _alerts(top, ctx)
    fleet = _fleet(top, ctx, rel)

    k = _Reader(top.get("keys", (dict,), {}, "a table"), "keys", ctx)
    keys: dict[str, str] = {}
    for action in KEY_ACTIONS:
        if action in k.table:
            keys[action] = k.string(action) or ""
        else:
            k.seen.add(action)
    k.done()
    bound: dict[str, str] = {}  # a key bound twice would silently run only one action
    for action, spec in keys.items():
        # a plain r and R are two keys; ctrl+r and Ctrl+R are one
        for key in (k.lower() if "+" in k else k for k in (p.strip() for p in spec.split(","))):
            if key and bound.setdefault(key, action) != action:
                ctx.fail(f"keys.{action}", f"key {ctx.show(f'keys.{action}', key)} is "
                         f"already bound to {bound[key]}")

    top.done()
    return Config(services=tuple(services), docker=docker, tokens=tokens, probes=probes,
                  logs=logs, gpu=gpu, host=host, keys=keys, path=path, base_dir=base_dir,
                  jobs=jobs, history=history, alerts=alerts, fleet=fleet)


#: what an SSH destination or host name may hold (never a leading "-": an option)
_SSH_DEST = re.compile(r"^[A-Za-z0-9_.@%:\[\]-]{1,255}$")


def check_destination(dest: str) -> str | None:
    """Why `dest` is no safe `ssh` destination (None: it is one). A leading `-` would be
    read as an option (`-oProxyCommand=…`): refused."""
    if not dest or dest.startswith("-") or not _SSH_DEST.match(dest):
        return ("expected [user@]host or an ssh_config alias (letters, digits, . _ - @ : "
                "[ ]; not starting with -)")
    return None


def _fleet(top: _Reader, ctx: _Ctx, rel: Any) -> FleetConfig:
    """`[[hosts]]` and `[fleet]`: the hosts of the fleet view, each over plain SSH."""
    out: list[HostEntry] = []
    raw_hosts = top.table_list("hosts") if "hosts" in top.table else []
    top.seen.add("hosts")
    names: set[str] = set()
    for i, raw in enumerate(raw_hosts):
        where = f"hosts[{i}]"
        h = _Reader(raw, where, ctx)
        dest = h.string("ssh", required=True) or ""
        why = check_destination(dest)
        if why:
            ctx.fail(f"{where}.ssh", f"{ctx.show(f'{where}.ssh', dest)}: {why}")
        name = h.string("name") or dest.rsplit("@", 1)[-1]
        if check_destination(name):
            ctx.fail(f"{where}.name", f"{ctx.show(f'{where}.name', name)}: expected letters, "
                     "digits and . _ - @ : (not starting with -)")
        if name in names or name == "local":
            ctx.fail(f"{where}.name", f"host name {ctx.show(f'{where}.name', name)} is "
                     "used twice (or is \"local\", the machine the dashboard runs on)")
        names.add(name)
        port = h.integer("port", 0, minimum=0) or None
        if port is not None and port > 65535:
            ctx.fail(f"{where}.port", f"expected a port from 1 to 65535, got {port}")
        identity = h.string("identity")
        ssh_config = h.string("ssh_config")
        command: tuple[str, ...] = ("genai-tui",)
        if "command" in h.table:
            if isinstance(h.table["command"], str):
                import shlex

                try:
                    command = tuple(shlex.split(h.string("command") or ""))
                except ValueError:
                    ctx.fail(f"{where}.command", "unbalanced quotes")
            else:
                command = h.strings("command")
            if not command:
                ctx.fail(f"{where}.command", "expected the remote genai-tui command")
        out.append(HostEntry(
            name=name, ssh=dest, port=port,
            identity=rel(identity, f"{where}.identity") if identity else None,
            config=h.string("config"), command=command,
            ssh_config=rel(ssh_config, f"{where}.ssh_config") if ssh_config else None,
            readonly=h.boolean("readonly", False)))
        h.done()
    f = _Reader(top.get("fleet", (dict,), {}, "a table"), "fleet", ctx)
    fleet = FleetConfig(hosts=tuple(out), local=f.boolean("local", True),
                        stale_after=f.number("stale_after", FleetConfig.stale_after))
    f.done()
    return fleet


def _alerts(top: _Reader, ctx: _Ctx) -> tuple[AlertConfig, ...]:
    """`[[alerts]]`: each a command (argv list) or a webhook URL, never both."""
    out: list[AlertConfig] = []
    raw_alerts = top.table_list("alerts") if "alerts" in top.table else []
    top.seen.add("alerts")
    for i, raw in enumerate(raw_alerts):
        where = f"alerts[{i}]"
        a = _Reader(raw, where, ctx)
        command = a.strings("command")
        webhook = a.string("webhook")
        if bool(command) == bool(webhook):
            ctx.fail(where, "expected exactly one of command (a list of strings) or webhook "
                     "(an http(s):// URL)")
        if webhook:
            ctx.url(f"{where}.webhook", webhook)
        on = a.strings("on") if "on" in a.table else AlertConfig.on
        for j, state in enumerate(on):
            if state not in ALERT_STATES:
                ctx.fail(f"{where}.on[{j}]", f"unknown value {ctx.show(f'{where}.on[{j}]', state)}"
                         "; expected one of " + ", ".join(ALERT_STATES))
        alert = AlertConfig(
            name=a.string("name") or f"alert {i + 1}",
            command=command, webhook=webhook,
            severity=a.string("severity", "critical", choices=ALERT_SEVERITIES) or "critical",
            on=tuple(on),
            timeout=a.number("timeout", AlertConfig.timeout),
            per_minute=a.integer("per_minute", AlertConfig.per_minute),
            dedup_seconds=a.number("dedup_seconds", AlertConfig.dedup_seconds))
        a.done()
        out.append(alert)
    return tuple(out)


def _check_regex(ctx: _Ctx, where: str, pattern: str) -> None:
    """A process_pattern must compile; the compiler's own words only for a literal one."""
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError, MemoryError) as exc:
        if where in ctx.origins:  # re.error quotes pieces of the pattern
            ctx.fail(where, f"not a valid regex: {ctx.show(where, pattern)}")
        detail = exc.msg if isinstance(exc, re.error) else (
            "nested too deeply" if isinstance(exc, RecursionError) else "too large")
        ctx.fail(where, f"not a valid regex: {detail}")


# ------------------------------------------------------------------ messages

_BARE_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")


def _safe(text: str, limit: int) -> str:
    """`text` as one terminal-safe line: control, format (bidi) and separator characters
    escaped (`\\x1b`, `\\u202e`), at most about `limit` characters."""
    text = text[: limit * 2]
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                       for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _quote(value: str, limit: int = 80) -> str:
    """A literal value for a message: quoted, escaped, shortened."""
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return _safe(repr(value), limit * 6)


def _short_number(value: object) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"a number with {len(text)} digits"



def _tname(value: Any) -> str:
    return {
        bool: "a boolean", int: "an integer", float: "a number", str: "a string",
        list: "an array", dict: "a table",
    }.get(type(value), type(value).__name__)


def _toml_where(msg: str) -> str | None:
    m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
    return f"line {m.group(1)}, column {m.group(2)}" if m else None


def _toml_what(exc: Exception) -> str:
    return re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc)) or "invalid TOML"


def _find_line(text: str, where: str) -> int | None:
    """Best-effort line of a dotted key such as `services[1].kind` in the TOML text."""
    if not text or not where:
        return None
    parts = re.findall(r"([A-Za-z0-9_\-]+)(?:\[(\d+)\])?", where)
    lines = text.splitlines()
    start = 0
    for name, idx in parts[:-1]:
        header = re.compile(rf"^\s*\[\[\s*{re.escape(_qualified(parts, name))}\s*\]\]")
        table = re.compile(rf"^\s*\[\s*{re.escape(_qualified(parts, name))}\s*\]")
        hits = [i for i, ln in enumerate(lines) if header.match(ln) or table.match(ln)]
        if idx:
            n = int(idx)
            if n < len(hits):
                start = hits[n]
        elif hits:
            start = hits[0]
    last = parts[-1][0]
    key = re.compile(rf"^\s*\"?{re.escape(last)}\"?\s*=")
    for i in range(start, len(lines)):
        if key.match(lines[i]):
            return i + 1
        if i > start and lines[i].lstrip().startswith("[") and start:
            break
    return start + 1 if start else None


def _qualified(parts: list[tuple[str, str]], name: str) -> str:
    names = []
    for n, _ in parts:
        names.append(n)
        if n == name:
            break
    return ".".join(names)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
