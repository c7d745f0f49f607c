"""Stack configuration: a TOML file (plus `${VAR:-default}` from the environment and a
`.env` beside it); with no file, the reference stack's defaults.

The TOML names are a public interface. Every mistake in a file becomes one `ConfigError`
naming the file, the line or key, and what was expected — never a traceback.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

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
)


class ConfigError(Exception):
    """A configuration mistake, phrased for the admin who has to fix it."""

    def __init__(self, source: str, where: str | None, message: str) -> None:
        self.source = source
        self.where = where
        self.message = message
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


@dataclass(frozen=True)
class TokensConfig:
    canonical: str | None = None
    restart_after_unify: tuple[str, ...] = ()
    locations: tuple[TokenLocation, ...] = ()
    backup_dir: Path = Path(".genai-tui/backups")
    audit_log: Path = Path(".genai-tui/audit.jsonl")


@dataclass(frozen=True)
class DockerConfig:
    host: str | None = None
    timeout: float = 10.0
    resync_interval: float = 60.0
    restart_loop_count: int = 3
    restart_loop_window: float = 120.0
    health_starting_max: float = 300.0
    stop_timeout: int = 10


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
class Config:
    services: tuple[ServiceConfig, ...]
    docker: DockerConfig = field(default_factory=DockerConfig)
    tokens: TokensConfig = field(default_factory=TokensConfig)
    probes: ProbeConfig = field(default_factory=ProbeConfig)
    logs: LogConfig = field(default_factory=LogConfig)
    gpu: GpuConfig = field(default_factory=GpuConfig)
    host: HostConfig = field(default_factory=HostConfig)
    keys: Mapping[str, str] = field(default_factory=dict)
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
    xdg = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
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
        base = (cwd or Path.cwd()).resolve()
        return _build({}, env_vars=_with_dotenv(env, base), source="built-in defaults",
                      path=None, base_dir=base, text="")
    return load_file(path, env)


def load_file(path: Path, env: Mapping[str, str] | None = None) -> Config:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(source, None, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, None, f"cannot read: {_reason(exc)}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, _toml_where(str(exc)), f"TOML syntax error: {_toml_what(exc)}")\
            from None
    base = path.resolve().parent
    env_vars = _with_dotenv(dict(os.environ if env is None else env), base)
    return _build(data, env_vars=env_vars, source=source, path=path.resolve(), base_dir=base,
                  text=text)


# ------------------------------------------------------------------ building


def _with_dotenv(env: dict[str, str], base: Path) -> dict[str, str]:
    """Environment for `${VAR}` in the config: a `.env` beside it, overridden by the real env."""
    merged: dict[str, str] = {}
    dotenv = base / ".env"
    if dotenv.is_file():
        try:
            merged.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
        except (OSError, UnicodeDecodeError, ValueError):
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
            value = _interpolate(value, self.ctx.env)
            if choices and value not in choices:
                self.ctx.fail(self._key(key), f"unknown value {value!r}; expected one of "
                              + ", ".join(choices))
            if not value.strip():
                self.ctx.fail(self._key(key), "must not be empty")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.get(key, (int, float), default, "a number")
        if value <= 0:
            self.ctx.fail(self._key(key), f"expected a number above 0, got {value}")
        return float(value)

    def integer(self, key: str, default: int, *, minimum: int = 1) -> int:
        value = self.get(key, (int,), default, "an integer")
        if value < minimum:
            self.ctx.fail(self._key(key), f"expected an integer >= {minimum}, got {value}")
        return int(value)

    def boolean(self, key: str, default: bool) -> bool:
        return bool(self.get(key, (bool,), default, "true or false"))

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key, (list,), [], "a list of strings")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.ctx.fail(f"{self._key(key)}[{i}]", f"expected a string, got {_tname(item)}")
        return tuple(_interpolate(v, self.ctx.env) for v in value)

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

    def fail(self, where: str, message: str) -> None:
        line = _find_line(self.text, where)
        raise ConfigError(self.source, f"line {line}: {where}" if line else where, message)


def _build(data: dict[str, Any], *, env_vars: Mapping[str, str], source: str,
           path: Path | None, base_dir: Path, text: str) -> Config:
    ctx = _Ctx(source, text, env_vars)
    top = _Reader(data, "", ctx)

    def rel(p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else base_dir / q

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
            url = s.string("url", required=True) or ""
            if not re.match(r"^https?://[^/\s]+", url):
                ctx.fail(f"services[{i}].url", f"expected an http(s):// URL, got {url!r}")
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
                log_file=rel(log_file) if log_file else None,
            )
            if svc.process_pattern:
                try:
                    re.compile(svc.process_pattern)
                except re.error as exc:
                    ctx.fail(f"services[{i}].process_pattern", f"not a valid regex: {exc}")
            if not svc.health_path.startswith("/"):
                ctx.fail(f"services[{i}].health_path", "expected a path starting with /")
            s.done()
            if any(o.name == svc.name for o in services):
                ctx.fail(f"services[{i}].name", f"duplicate service name {svc.name!r}")
            services.append(svc)
    else:
        services = [replace(s, url=_interpolate(s.url, env_vars)) for s in REFERENCE_SERVICES]
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
            loc = TokenLocation(lname, rel(r.string("path", required=True) or ""), fmt, key,
                                compose=r.boolean("compose", True))
            r.done()
            if any(o.name == lname for o in locations):
                ctx.fail(f"tokens.locations[{i}].name", f"duplicate location name {lname!r}")
            locations.append(loc)
    else:
        t.seen.add("locations")
        locations = [replace(loc, path=base_dir / loc.path) for loc in REFERENCE_TOKEN_LOCATIONS]
    canonical = t.string("canonical", "secrets" if "locations" not in t.table else None)
    if canonical is None and locations:
        canonical = locations[0].name
    if canonical is not None and canonical not in {loc.name for loc in locations}:
        ctx.fail("tokens.canonical", f"{canonical!r} is not the name of a [[tokens.locations]]")
    restart_after = t.strings("restart_after_unify") if "restart_after_unify" in t.table else (
        tuple(n for n in ("comfyui-qwen",) if n in names))
    for n in restart_after:
        if n not in names:
            ctx.fail("tokens.restart_after_unify", f"{n!r} is not a configured service")
    tokens = TokensConfig(
        canonical=canonical,
        restart_after_unify=restart_after,
        locations=tuple(locations),
        backup_dir=rel(t.string("backup_dir", ".genai-tui/backups") or ""),
        audit_log=rel(t.string("audit_log", ".genai-tui/audit.jsonl") or ""),
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
                      disks=tuple(rel(x) for x in h.strings("disks")),
                      memory_warn_pct=h.number("memory_warn_pct", HostConfig.memory_warn_pct))
    h.done()

    k = _Reader(top.get("keys", (dict,), {}, "a table"), "keys", ctx)
    keys: dict[str, str] = {}
    for action in KEY_ACTIONS:
        if action in k.table:
            keys[action] = k.string(action) or ""
        else:
            k.seen.add(action)
    k.done()

    top.done()
    return Config(services=tuple(services), docker=docker, tokens=tokens, probes=probes,
                  logs=logs, gpu=gpu, host=host, keys=keys, path=path, base_dir=base_dir)


# ------------------------------------------------------------------ messages


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
