"""Zero-config discovery (`genai-tui init`): what the local Docker engine knows about the
stack, turned into a proposed config.

Docker already knows where each ComfyUI's `login/PASSWORD` lives on the host (its mounts),
which compose project and folder it belongs to (labels) and which ports the host can
reach. This module inspects every container once, probes each published port with a short
deadline (`/system_stats` with `comfyui_version`, ComfyUI-Login's 401 body, `/health`),
reads the small files that may hold a copy of the credential (mounted PASSWORD and token
files, the project's `.env` and `env_file`s, token-like files in the project's folder) and
builds a `Proposal`: plain dataclasses with the evidence of every guess.

Secrets never leave this module's locals: a copy is named by its fingerprint only
(`genai_tui.secret`). Labels, names and paths are untrusted: they are shown through
`safety.shown`, written to TOML with every control character escaped, and files are opened
without following a last-component symlink (a link is flagged, never read through).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genai_tui.config import Config
from genai_tui.model import MISSING, ContainerInfo
from genai_tui.safety import shown
from genai_tui.secret import BCRYPT_RE, fingerprint
from genai_tui.sources import envfile
from genai_tui.sources.tokens import fsutil

__all__ = [
    "NO_CONFIG_HINT",
    "Answer",
    "Proposal",
    "ProposedLocation",
    "ProposedService",
    "WriteRefused",
    "analyse",
    "engine_description",
    "offer_discovery",
    "probe_ports",
    "propose",
    "summary_line",
    "to_toml",
    "write_config",
]

PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
WORKING_DIR = "com.docker.compose.project.working_dir"
CONFIG_FILES = "com.docker.compose.project.config_files"
ONEOFF = "com.docker.compose.oneoff"
LOGIN_NODE = "custom_nodes/ComfyUI-Login"
#: ComfyUI-Login's answer to a request without credentials
AUTH_REQUIRED = {"error": "Authentication required."}
#: token-like files are tiny: anything bigger is not read
MAX_TOKEN_FILE = 64 * 1024
#: how much of a project folder is looked at for token files
SCAN_DEPTH = 3
SCAN_ENTRIES = 4000
#: folders never walked: models, outputs, code, caches (huge, and hold no credential copy
#: anything reads), and our own state
SKIP_DIRS = frozenset({
    ".git", "node_modules", "models", "custom_nodes", "output", "outputs", "input", "cache",
    ".cache", "venv", ".venv", "__pycache__", ".genai-tui", "temp", "tmp", "user",
})
#: keys of an env file whose non-hash value is checked with bcrypt against the PASSWORD
#: hashes (each check costs ~0.25 s at cost 12, so only credential-like keys, a few)
RAW_KEY = re.compile(r"TOKEN|PASS|SECRET|AUTH|KEY|CRED", re.I)
MAX_RAW_CHECKS = 8
#: the evidence of a copy found only by walking the project folder
SCANNED = "found in the project folder (no container mounts it)"
#: at most this many container ports are probed, in one bounded round
MAX_PROBES = 64
#: `${` in a value would be read back as `${VAR}` interpolation by genai_tui.config
_INTERPOLATION = re.compile(r"\$\{")
KIND_ORDER = {"comfyui": 0, "http": 1, "orchestrator": 2}
FORMAT_ORDER = ("hash_file", "password_file", "env", "json", "raw_env")


class WriteRefused(Exception):
    """The config was not written; the message says why (no secret in it)."""


# ------------------------------------------------------------------ the proposal


@dataclass
class ProposedService:
    """One `[[services]]` entry and why it is guessed so."""

    name: str
    container: str
    url: str | None
    kind: str  # comfyui | orchestrator | http
    auth: bool = False
    health_path: str = "/health"
    project: str | None = None
    running: bool = True
    evidence: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "container": self.container, "url": self.url,
                "kind": self.kind, "auth": self.auth, "health_path": self.health_path,
                "project": self.project, "running": self.running,
                "evidence": list(self.evidence)}


@dataclass
class ProposedLocation:
    """One `[[tokens.locations]]` entry: where a copy of the credential is, in which
    format, its fingerprint (never the value) and the evidence."""

    name: str
    path: Path
    format: str
    key: str | None = None
    fingerprint: str | None = None
    state: str = "ok"  # ok | missing | unreadable | symlink | invalid
    services: list[str] = field(default_factory=list)
    project: str | None = None
    outside_project: bool = False
    evidence: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "format": self.format,
                "key": self.key, "fingerprint": self.fingerprint, "state": self.state,
                "services": list(self.services), "project": self.project,
                "outside_project": self.outside_project, "evidence": list(self.evidence)}


@dataclass
class Ambiguous:
    """A service name that containers of several compose projects carry: reported, not
    guessed (choose with `--project`)."""

    service: str
    candidates: list[tuple[str, str]]  # (project, container)

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service,
                "candidates": [{"project": p, "container": c} for p, c in self.candidates]}


@dataclass
class Proposal:
    """What `init` would write, with the evidence; `error` set when the engine could not
    be asked at all."""

    engine: str
    services: list[ProposedService] = field(default_factory=list)
    locations: list[ProposedLocation] = field(default_factory=list)
    canonical: str | None = None
    restart_after_unify: list[str] = field(default_factory=list)
    ambiguous: list[Ambiguous] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)
    inspected: int = 0
    error: str | None = None

    @property
    def comfyui(self) -> list[ProposedService]:
        return [s for s in self.services if s.kind == "comfyui"]

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine, "error": self.error, "inspected": self.inspected,
            "projects": list(self.projects),
            "services": [s.to_json() for s in self.services],
            "tokens": {"canonical": self.canonical,
                       "restart_after_unify": list(self.restart_after_unify),
                       "locations": [loc.to_json() for loc in self.locations]},
            "ambiguous": [a.to_json() for a in self.ambiguous],
            "skipped": list(self.skipped), "warnings": list(self.warnings),
        }


#: what the dashboard says when it watches the built-in reference stack and finds none of it
NO_CONFIG_HINT = "no config found — press i to discover the services on this host"


def offer_discovery(config: Config, containers: Iterable[ContainerInfo]) -> str | None:
    """NO_CONFIG_HINT when the dashboard runs on the built-in defaults (no config file)
    and none of the reference stack's containers exists on the engine; else None."""
    if config.path is not None:
        return None
    infos = list(containers)
    if not infos or any(c.state != MISSING for c in infos):
        return None
    return NO_CONFIG_HINT


def summary_line(p: Proposal) -> str:
    """One line for a status bar or a notification: what was found, or why nothing."""
    if p.error:
        return f"discovery failed: {shown(p.error, 200)}"
    if not p.services:
        more = f"; {len(p.ambiguous)} ambiguous" if p.ambiguous else ""
        return (f"no service found on this host ({p.inspected} container(s) inspected"
                f"{more})")
    n_cf, n_loc = len(p.comfyui), len(p.locations)
    bits = [f"{len(p.services)} service{'' if len(p.services) == 1 else 's'}",
            f"{n_cf} ComfyUI" if n_cf else "no ComfyUI",
            f"{n_loc} credential cop{'y' if n_loc == 1 else 'ies'}"]
    if p.ambiguous:
        bits.append(f"{len(p.ambiguous)} ambiguous")
    if p.warnings:
        bits.append(f"{len(p.warnings)} warning{'' if len(p.warnings) == 1 else 's'}")
    return "found " + ", ".join(bits)


# ------------------------------------------------------------------ the engine


def engine_description(docker_host: str | None = None,
                       env: Mapping[str, str] | None = None) -> str:
    """Which engine is asked, in the words an admin would type (DOCKER_HOST or the
    default socket)."""
    env = os.environ if env is None else env
    return docker_host or env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def inspect_engine(docker_host: str | None = None, timeout: float = 10.0
                   ) -> tuple[list[dict[str, Any]], str | None]:
    """(`docker inspect` of every container, None) or ([], why the engine could not be
    asked). Containers that vanish meanwhile are skipped."""
    import docker
    import docker.errors

    from genai_tui.sources.docker import describe_error

    where = engine_description(docker_host)
    try:
        client = (docker.DockerClient(base_url=docker_host, timeout=int(timeout))
                  if docker_host else docker.from_env(timeout=int(timeout)))
    except Exception as exc:
        return [], f"cannot reach the Docker engine at {where}: {describe_error(exc)}"
    try:
        try:
            listing = client.api.containers(all=True)
        except Exception as exc:
            return [], f"cannot reach the Docker engine at {where}: {describe_error(exc)}"
        out = []
        for item in listing:
            cid = item.get("Id")
            if not isinstance(cid, str):
                continue
            try:
                out.append(client.api.inspect_container(cid))
            except docker.errors.NotFound:
                continue  # removed between the listing and now
            except docker.errors.APIError:
                continue
        return out, None
    finally:
        client.close()


# ------------------------------------------------------------------ probing


@dataclass
class Answer:
    """What one published port said to the discovery requests (status codes and the
    few body facts we use; never a body)."""

    stats_status: int | None = None
    comfyui_version: str | None = None
    login_401: bool = False
    health_status: int | None = None
    health_json: bool = False
    health_service: str | None = None
    health_backends: int = 0
    orchestrator_body: bool = False
    error: str | None = None

    @property
    def http(self) -> bool:
        return self.stats_status is not None or self.health_status is not None


async def _probe_one(client: Any, url: str) -> Answer:
    from genai_tui.sources.probes import MAX_BODY_BYTES, classify_error, parse_health

    ans = Answer()

    async def get(path: str) -> tuple[int, bytes | None]:
        async with client.stream("GET", url + path) as resp:
            body: bytearray | None = bytearray()
            async for chunk in resp.aiter_raw():
                assert body is not None
                body += chunk
                if len(body) >= MAX_BODY_BYTES:
                    body = None
                    break
            return resp.status_code, bytes(body) if body is not None else None

    try:
        status, body = await get("/system_stats")
        ans.stats_status = status
        doc = _json(body)
        if status == 200 and isinstance(doc, dict) and isinstance(doc.get("system"), dict):
            version = doc["system"].get("comfyui_version")
            if isinstance(version, str) and version.strip():
                ans.comfyui_version = shown(version, 40)
        if status == 401 and doc == AUTH_REQUIRED:
            ans.login_401 = True
    except Exception as exc:
        ans.error = classify_error(exc)[1]
        return ans
    try:
        status, body = await get("/health")
        ans.health_status = status
        doc = _json(body)
        if isinstance(doc, dict):
            ans.health_json = True
            svc = doc.get("service")
            if isinstance(svc, str):
                ans.health_service = shown(svc, 60)
            health = parse_health(body)
            ans.health_backends = len(health.backends)
            ans.orchestrator_body = bool(health.backends) or (
                isinstance(svc, str) and "orchestrat" in svc.lower())
    except Exception as exc:
        ans.error = classify_error(exc)[1]
    if ans.health_status is not None and 200 <= ans.health_status < 300 \
            and not ans.orchestrator_body:
        try:  # the deployed orchestrator's /status: {"orchestrator": {...}, "services": ...}
            status, body = await get("/status")
            doc = _json(body)
            if status == 200 and isinstance(doc, dict) and isinstance(doc.get("orchestrator"),
                                                                       dict):
                ans.orchestrator_body = True
        except Exception:
            pass
    return ans


def _json(body: bytes | None) -> Any:
    if not body:
        return None
    try:
        return json.loads(body.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None


def probe_ports(urls: Iterable[str], *, connect_timeout: float = 0.5,
                read_timeout: float = 1.5, deadline: float = 6.0) -> dict[str, Answer]:
    """Ask each URL the discovery questions, all at once, within `deadline` seconds in
    total (a port that has not answered by then is reported as such)."""
    import httpx

    wanted = list(dict.fromkeys(urls))[:MAX_PROBES]
    if not wanted:
        return {}

    async def run() -> dict[str, Answer]:
        async with httpx.AsyncClient(
                trust_env=False, follow_redirects=False,
                headers={"Accept": "application/json", "Accept-Encoding": "identity",
                         "User-Agent": "genai-tui-init"},
                limits=httpx.Limits(max_connections=max(4, len(wanted)),
                                    max_keepalive_connections=0),
                timeout=httpx.Timeout(read_timeout, connect=connect_timeout)) as client:
            tasks = {u: asyncio.ensure_future(_probe_one(client, u)) for u in wanted}
            done, pending = await asyncio.wait(tasks.values(), timeout=deadline)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            out = {}
            for u, t in tasks.items():
                if t in done and not t.cancelled() and t.exception() is None:
                    out[u] = t.result()
                else:
                    out[u] = Answer(error=f"no answer within {deadline:g}s")
            return out

    return asyncio.run(run())


# ------------------------------------------------------------------ reading files


@dataclass
class _Read:
    """A small file read without following its last link: `text` (None when not read)
    and, when not read, why."""

    text: str | None
    state: str  # ok | missing | unreadable | symlink | notfile
    why: str = ""


def _read_small(path: Path) -> _Read:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return _Read(None, "missing", "does not exist yet")
    except OSError as exc:
        return _Read(None, "unreadable", fsutil.reason(exc))
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return _Read(None, "symlink", f"is a symlink to {shown(target, 160)} (not followed)")
    if not stat.S_ISREG(st.st_mode):
        return _Read(None, "notfile", f"is {fsutil.kind_of(st.st_mode)}")
    try:
        data, _ = fsutil.read_regular(path, MAX_TOKEN_FILE, follow=False)
    except OSError as exc:
        return _Read(None, "unreadable", fsutil.reason(exc))
    if len(data) > MAX_TOKEN_FILE:
        return _Read(None, "unreadable", "too large for a token file")
    return _Read(data.decode("utf-8", "replace"), "ok")


def _under_link(path: Path) -> str | None:
    """The first folder above `path` that is a symlink, if any (the file itself is
    checked when read)."""
    p = path.parent
    while p != p.parent:
        with contextlib.suppress(OSError):
            if stat.S_ISLNK(os.lstat(p).st_mode):
                return str(p)
        p = p.parent
    return None


def _hash_of(text: str) -> str | None:
    """The bcrypt hash a whole small file holds (a hash file, or PASSWORD's line 1)."""
    first = text.lstrip("\ufeff").split("\n", 1)[0].strip().strip("\"'")
    return first if BCRYPT_RE.match(first) else None


def _json_hash_keys(text: str) -> list[tuple[str, str]]:
    """(key, hash) for each top-level string value of a JSON object that is a hash."""
    doc = _json(text.encode())
    if not isinstance(doc, dict):
        return []
    return [(k, v.strip()) for k, v in doc.items()
            if isinstance(k, str) and isinstance(v, str) and BCRYPT_RE.match(v.strip())]


# ------------------------------------------------------------------ analysis


@dataclass
class _Container:
    attrs: dict[str, Any]
    name: str
    labels: dict[str, str]
    project: str | None
    service: str
    workdir: Path | None
    running: bool


def _labels(attrs: Mapping[str, Any]) -> dict[str, str]:
    raw = (attrs.get("Config") or {}).get("Labels") or {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def _urls(attrs: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(container port, URL the host can reach) per published TCP port; a wildcard bind
    is reached on loopback, a specific address on itself."""
    raw = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    if not raw:
        raw = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    out: list[tuple[int, str]] = []
    for spec, bindings in sorted(raw.items(), key=lambda kv: str(kv[0])):
        port, _, proto = str(spec).partition("/")
        if (proto or "tcp") != "tcp" or not bindings or not port.isdigit():
            continue
        best: str | None = None
        for b in bindings:
            hport = str((b or {}).get("HostPort") or "")
            if not hport.isdigit() or not 0 < int(hport) < 65536:
                continue
            ip = str((b or {}).get("HostIp") or "")
            if ip in ("", "0.0.0.0"):
                best = f"http://127.0.0.1:{int(hport)}"
                break
            if ip == "::":
                best = best or f"http://[::1]:{int(hport)}"
            elif re.fullmatch(r"[0-9.]+", ip):
                best = best or f"http://{ip}:{int(hport)}"
            elif re.fullmatch(r"[0-9a-fA-F:]+", ip):
                best = best or f"http://[{ip}]:{int(hport)}"
        if best:
            out.append((int(port), best))
    return out


def _mounts(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [m for m in attrs.get("Mounts") or [] if isinstance(m, dict)
            and isinstance(m.get("Source"), str) and isinstance(m.get("Destination"), str)
            and m.get("Type") in ("bind", "volume")]


def _mount_words(m: Mapping[str, Any]) -> str:
    """How a mount is named in evidence: `bind mount of SRC` / `volume NAME (SRC)`."""
    if m.get("Type") == "volume":
        return f"volume {shown(m.get('Name') or '?', 80)} ({shown(m['Source'], 200)})"
    return f"bind mount of {shown(m['Source'], 200)}"


def _covering(mounts: Sequence[Mapping[str, Any]], cpath: str) -> Mapping[str, Any] | None:
    """The mount that a container path lives on (the deepest destination above it)."""
    best = None
    for m in mounts:
        d = m["Destination"].rstrip("/") or "/"
        if cpath == d or cpath.startswith(d.rstrip("/") + "/"):
            if best is None or len(d) > len(best["Destination"].rstrip("/")):
                best = m
    return best


def _host_path(m: Mapping[str, Any], cpath: str) -> Path:
    d = m["Destination"].rstrip("/")
    rest = cpath[len(d):].lstrip("/")
    return Path(m["Source"]) / rest if rest else Path(m["Source"])


def _login_evidence(c: _Container) -> tuple[list[tuple[Path, str]], list[str]]:
    """(host PASSWORD paths with their evidence, evidence that ComfyUI-Login is installed),
    from the container's mounts."""
    mounts = _mounts(c.attrs)
    installed: list[str] = []
    cpaths: list[str] = []
    for m in mounts:
        d = m["Destination"].rstrip("/")
        src = Path(m["Source"])
        if d.endswith("/" + LOGIN_NODE):
            installed.append(f"ComfyUI-Login: {_mount_words(m)} → {shown(d, 160)}")
        elif d.endswith("/custom_nodes") and os.path.isdir(src / "ComfyUI-Login"):
            installed.append(f"ComfyUI-Login: {shown(src / 'ComfyUI-Login', 200)} in "
                             f"{_mount_words(m)} → {shown(d, 160)}")
        elif os.path.isdir(src / LOGIN_NODE):
            installed.append(f"ComfyUI-Login: {shown(src / LOGIN_NODE, 200)} in "
                             f"{_mount_words(m)} → {shown(d, 160)}")
        if d.endswith("/login/PASSWORD"):
            cpaths.append(d)
        elif d.endswith("/login"):
            cpaths.append(d + "/PASSWORD")
        elif os.path.isdir(src / LOGIN_NODE) or os.path.lexists(src / "login" / "PASSWORD"):
            cpaths.append(d + "/login/PASSWORD")
    found: list[tuple[Path, str]] = []
    for cpath in dict.fromkeys(cpaths):
        m = _covering(mounts, cpath)
        if m is None:
            continue
        d = m["Destination"].rstrip("/")
        host = _host_path(m, cpath)
        words = f"PASSWORD: {_mount_words(m)} → {shown(d, 160)}"
        if d != cpath:
            words += f" (container path {shown(cpath, 160)})"
        found.append((host, words))
    return found, installed


def _single_file_mounts(c: _Container) -> list[tuple[Path, str]]:
    """Bind-mounted single files other than PASSWORD (a mounted token file)."""
    out = []
    for m in _mounts(c.attrs):
        d = m["Destination"]
        if m.get("Type") != "bind" or d.endswith("/PASSWORD"):
            continue
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(m["Source"]).st_mode):
                out.append((Path(m["Source"]),
                            f"{_mount_words(m)} → {shown(d, 160)} (in {shown(c.name, 60)})"))
    return out


def _env_files(c: _Container) -> list[tuple[Path, str]]:
    """The project's `.env` and the `env_file`s its compose file names for this service."""
    if c.workdir is None:
        return []
    out = [(c.workdir / ".env", "the project's .env (read by Compose)")]
    for cf in (c.labels.get(CONFIG_FILES) or "").split(","):
        cf = cf.strip()
        if not cf:
            continue
        path = Path(cf) if os.path.isabs(cf) else c.workdir / cf
        read = _read_small_text(path, 1 << 20)
        if read is None:
            continue
        for svc, item in _compose_env_files(read):
            if svc != c.service:
                continue
            p = Path(item) if os.path.isabs(item) else c.workdir / item
            out.append((p, f"env_file of {shown(svc, 60)} in {shown(path, 200)}"))
    return out


def _read_small_text(path: Path, limit: int) -> str | None:
    try:
        data, _ = fsutil.read_regular(path, limit, follow=False)
    except OSError:
        return None
    return None if len(data) > limit else data.decode("utf-8", "replace")


_KEY = re.compile(r"^(?P<indent>[ ]*)(?P<key>[A-Za-z0-9_.\-\"']+)[ ]*:(?P<rest>.*)$")


def _compose_env_files(text: str) -> list[tuple[str, str]]:
    """(service, env_file path) from a compose file, without a YAML library: the
    `env_file:` keys under `services:` (a scalar, a flow list or a block list, and the
    long `- path: X` form). Good enough for what Compose files look like; a file it cannot
    read this way just yields no env_file."""
    out: list[tuple[str, str]] = []
    in_services = False
    svc_indent: int | None = None
    service: str | None = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].split(" #", 1)[0].rstrip()
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _KEY.match(line)
        if not m:
            continue
        indent, key, rest = len(m.group("indent")), m.group("key").strip("\"'"), \
            m.group("rest").strip()
        if indent == 0:
            in_services = key == "services"
            svc_indent, service = None, None
            continue
        if not in_services:
            continue
        if svc_indent is None or indent == svc_indent:
            svc_indent, service = indent, key
            continue
        if service is None or key != "env_file" or indent <= svc_indent:
            continue
        values: list[str] = []
        if rest.startswith("["):
            values = [v.strip().strip("\"'") for v in rest.strip("[]").split(",")]
        elif rest:
            values = [rest.strip("\"'")]
        else:
            while i < len(lines):
                item = lines[i].split(" #", 1)[0].rstrip()
                sm = re.match(r"^\s*-\s*(?:path\s*:\s*)?(.+)$", item)
                if not item.strip():
                    i += 1
                    continue
                if not sm or len(item) - len(item.lstrip()) < indent:
                    break
                values.append(sm.group(1).strip().strip("\"'"))
                i += 1
                # a long-form item's other keys (`required: false`)
                while i < len(lines) and re.match(r"^\s+[a-z_]+\s*:", lines[i]) and \
                        not re.match(r"^\s*-", lines[i]) and \
                        len(lines[i]) - len(lines[i].lstrip()) > indent + 2:
                    i += 1
        out.extend((service, v) for v in values if v)
    return out


def _scan_project(root: Path) -> list[Path]:
    """Token-like small files in a project folder, a bounded walk that never follows a
    link: `*.token`, `PASSWORD`, `*.conf` / `*.json` next to secrets, `.env*`, `*.env`."""
    found: list[Path] = []
    seen = 0
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack and seen < SCAN_ENTRIES:
        folder, depth = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            seen += 1
            if seen > SCAN_ENTRIES:
                break
            try:
                if e.is_symlink():
                    continue
                if e.is_dir(follow_symlinks=False):
                    if depth < SCAN_DEPTH and e.name not in SKIP_DIRS:
                        stack.append((Path(e.path), depth + 1))
                    continue
                if not e.is_file(follow_symlinks=False):
                    continue
            except OSError:
                continue
            n = e.name
            if (n.endswith((".token", ".env", ".conf")) or n == "PASSWORD"
                    or n.startswith(".env") or ("secret" in folder.name.lower()
                                                and n.endswith(".json"))):
                found.append(Path(e.path))
    return sorted(found)


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return s[:48].strip("-") or "copy"


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        return os.path.commonpath([os.path.abspath(path), os.path.abspath(folder)]) == \
            os.path.abspath(folder)
    except ValueError:
        return False


class _Builder:
    """Collects locations (deduplicated by path and key), keeping secrets in locals."""

    def __init__(self, check_raw: Callable[[str, str], bool]) -> None:
        self.locations: list[ProposedLocation] = []
        self.hashes: dict[str, str] = {}  # location name -> hash (private, never shown)
        self.check_raw = check_raw
        self.raw_checks = 0
        self.names: set[str] = set()

    def name(self, base: str) -> str:
        name, n = base, 2
        while name in self.names:
            name, n = f"{base}-{n}", n + 1
        self.names.add(name)
        return name

    def find(self, path: Path, key: str | None) -> ProposedLocation | None:
        ap = os.path.abspath(path)
        return next((loc for loc in self.locations
                     if os.path.abspath(loc.path) == ap and loc.key == key), None)

    def add(self, base: str, path: Path, fmt: str, key: str | None, value: str | None,
            evidence: str, *, state: str = "ok", project: str | None = None,
            workdir: Path | None = None, service: str | None = None) -> ProposedLocation:
        loc = self.find(path, key)
        if loc is None:
            loc = ProposedLocation(self.name(base), path, fmt, key,
                                   fingerprint(value) if value else None, state,
                                   project=project)
            if value:
                self.hashes[loc.name] = value
            loc.outside_project = workdir is not None and not _inside(path, workdir)
            self.locations.append(loc)
        if not any(e.startswith(evidence) for e in loc.evidence) and not (
                evidence == SCANNED and loc.evidence):
            loc.evidence.append(evidence)
        if service and service not in loc.services:
            loc.services.append(service)
        return loc

    def known_hashes(self) -> list[str]:
        return list(dict.fromkeys(self.hashes.values()))

    def raw_matches(self, raw: str) -> str | None:
        """The known hash a raw value verifies, if any (bounded number of bcrypt calls)."""
        if not raw or len(raw) > 72 or len(raw) < 8 or any(c.isspace() for c in raw):
            return None
        for h in self.known_hashes():
            if self.raw_checks >= MAX_RAW_CHECKS:
                return None
            self.raw_checks += 1
            if self.check_raw(raw, h):
                return h
        return None


def _kind(c: _Container, answers: Mapping[str, Answer], installed: list[str]
          ) -> tuple[str | None, str | None, bool, str, list[str]]:
    """(kind, url, auth, health_path, evidence) of a container, or kind None when it
    does not look like a service."""
    ev: list[str] = []
    urls = _urls(c.attrs)
    cfg = c.attrs.get("Config") or {}
    comfy_url = next((u for _, u in urls if (a := answers.get(u)) is not None
                      and (a.comfyui_version or a.login_401)), None)
    login = list(installed)
    if comfy_url:
        a = answers[comfy_url]
        if a.comfyui_version:
            ev.append(f"{shown(comfy_url, 80)}/system_stats answers comfyui_version "
                      f"{a.comfyui_version}")
        if a.login_401:
            login.append(f"{shown(comfy_url, 80)}/system_stats: 401 with ComfyUI-Login's "
                         "JSON body")
        ev.extend(login)
        return "comfyui", comfy_url, bool(login), "/health", ev
    image = str(cfg.get("Image") or "").lower()
    args = [str(x) for x in [*(cfg.get("Entrypoint") or []), *(cfg.get("Cmd") or [])]]
    main_py = any(os.path.basename(a) == "main.py" for a in args) and any(
        a in ("--listen", "--port") for a in args)
    answered = any((a := answers.get(u)) is not None and a.http for _, u in urls)
    if installed or (not answered and ("comfyui" in image or main_py)):
        if "comfyui" in image:
            ev.append(f"the image is {shown(cfg.get('Image'), 60)}")
        elif main_py:
            ev.append("the command runs main.py --listen/--port (ComfyUI's)")
        ev.extend(login)
        url = next((u for p, u in urls if p == 8188), urls[0][1] if urls else None)
        if url and c.running:
            a = answers.get(url)
            ev.append(f"{shown(url, 80)}: " + (shown(a.error, 80) if a and a.error
                                               else "no ComfyUI answer"))
        elif not c.running:
            ev.append("not running: not probed")
        return "comfyui", url, bool(login), "/health", ev
    for _, url in urls:
        a = answers.get(url)
        if a is None or not a.http:
            continue
        ok_health = a.health_status is not None and 200 <= a.health_status < 300
        named = "orchestrat" in (c.service + " " + c.name + " " + image).lower()
        if ok_health and (a.orchestrator_body or named):
            why = (f"{shown(url, 80)}/health answers {a.health_status}"
                   + (f" (service {a.health_service})" if a.health_service else "")
                   + (f", {a.health_backends} backends" if a.health_backends else ""))
            return "orchestrator", url, False, "/health", [why]
        if ok_health:
            return "http", url, False, "/health", [
                f"{shown(url, 80)}/health answers {a.health_status}"]
        status = a.health_status or a.stats_status
        return "http", url, False, "/", [f"{shown(url, 80)} answers HTTP {status}"]
    return None, None, False, "/health", []


def analyse(containers: Sequence[Mapping[str, Any]], answers: Mapping[str, Answer], *,
            engine: str = "(not named)", projects: Sequence[str] = (),
            check_raw: Callable[[str, str], bool] | None = None,
            scan: bool = True) -> Proposal:
    """The proposal from `docker inspect` documents and the probe answers; reads the
    token-like files it finds (never following a last-component link). `projects`
    restricts it to those compose projects."""
    if check_raw is None:
        from genai_tui.sources.tokens import check_raw as _check

        check_raw = _check
    prop = Proposal(engine=engine)
    cs: list[_Container] = []
    for attrs in containers:
        labels = _labels(attrs)
        name = str(attrs.get("Name") or "").lstrip("/") or str(attrs.get("Id", ""))[:12]
        project = labels.get(PROJECT) or None
        if projects and project not in projects:
            continue
        if labels.get(ONEOFF, "False") == "True":
            prop.skipped.append(f"{shown(name, 80)}: a `compose run` one-off")
            continue
        wd = labels.get(WORKING_DIR)
        state = (attrs.get("State") or {}).get("Status")
        cs.append(_Container(dict(attrs), name, labels, project, labels.get(SERVICE) or name,
                             Path(wd) if wd and os.path.isabs(wd) else None,
                             state == "running"))
    prop.inspected = len(cs)
    prop.projects = sorted({c.project for c in cs if c.project})
    builder = _Builder(check_raw)

    # services: one per container; a compose service name used by several projects is
    # reported, not guessed
    by_name: dict[str, list[_Container]] = {}
    for c in cs:
        by_name.setdefault(c.service, []).append(c)
    chosen: list[tuple[_Container, ProposedService, list[tuple[Path, str]]]] = []
    for c in cs:
        passwords, installed = _login_evidence(c)
        kind, url, auth, health, ev = _kind(c, answers, installed)
        if kind is None:
            why = "no published HTTP port" if not _urls(c.attrs) else \
                "no HTTP answer on its published ports"
            prop.skipped.append(f"{shown(c.name, 80)}: {why}")
            continue
        if passwords and kind == "comfyui" and not auth:
            auth = True
            ev.append("a login/ folder is mounted (ComfyUI-Login's)")
        same = by_name[c.service]
        projects_of = {x.project for x in same}
        if len(projects_of) > 1:
            amb = next((a for a in prop.ambiguous if a.service == c.service), None)
            if amb is None:
                amb = Ambiguous(c.service, [])
                prop.ambiguous.append(amb)
            amb.candidates.append((c.project or "(no project)", c.name))
            continue
        name = c.service if len(same) == 1 else c.name
        if url is None:
            prop.skipped.append(f"{shown(c.name, 80)}: {kind} without a published port the "
                                "host can reach (publish one to watch it)")
            continue
        if c.project:
            ev.insert(0, f"compose project {shown(c.project, 60)}, service "
                      f"{shown(c.service, 60)}")
        svc = ProposedService(name, c.name, url, kind, auth, health, c.project, c.running, ev)
        chosen.append((c, svc, passwords))
    for a in prop.ambiguous:
        shown_c = ", ".join(f"{shown(c, 60)} (project {shown(p, 60)})"
                            for p, c in a.candidates)
        prop.warnings.append(f"service {shown(a.service, 60)} is in "
                             f"{len(a.candidates)} compose projects: {shown_c}; not guessed "
                             "— choose with --project")
    taken: set[str] = set()
    for _, svc, _ in chosen:
        if svc.name in taken:
            svc.name = svc.container
        taken.add(svc.name)
    chosen.sort(key=lambda t: (KIND_ORDER.get(t[1].kind, 9), t[1].project or "", t[1].name))
    prop.services = [svc for _, svc, _ in chosen]

    # credential copies: PASSWORD files first (they tell which hash is the live one)
    for c, svc, passwords in chosen:
        for host, words in passwords:
            r = _read_small(host)
            value = _hash_of(r.text) if r.text is not None else None
            state = r.state if r.state != "ok" else ("ok" if value else "invalid")
            loc = builder.add(f"{svc.name}-password", host, "password_file", None, value,
                              words, state=state if state != "notfile" else "unreadable",
                              project=c.project, workdir=c.workdir, service=svc.name)
            if r.why and r.why not in " ".join(loc.evidence):
                loc.evidence.append(f"{shown(host, 200)} {r.why}")
            link = _under_link(host)
            if link:
                loc.evidence.append(f"under the symlink {shown(link, 200)}")
    for c, svc, _ in chosen:
        for host, words in _single_file_mounts(c):
            _add_file(builder, host, words, c.project, c.workdir, svc.name)
    for c, svc, _ in chosen:
        for path, words in _env_files(c):
            _add_env(builder, path, words, c.project, c.workdir, svc.name)
    if scan:
        for wd, project in sorted({(c.workdir, c.project) for c, _, _ in chosen
                                   if c.workdir is not None}, key=lambda t: str(t[0])):
            for path in _scan_project(wd):
                if path.name.startswith(".env") or path.name.endswith(".env"):
                    _add_env(builder, path, SCANNED, project, wd, None)
                else:
                    _add_file(builder, path, SCANNED, project, wd,
                              None)
    builder.locations.sort(key=lambda loc: (FORMAT_ORDER.index(loc.format)
                                            if loc.format in FORMAT_ORDER else 9))
    prop.locations = builder.locations
    _finish_tokens(prop, builder)
    _warn(prop)
    return prop


def _add_file(b: _Builder, path: Path, words: str, project: str | None,
              workdir: Path | None, service: str | None) -> None:
    """A hash file, a PASSWORD found in the folder, or a JSON file with a hash value."""
    r = _read_small(path)
    if r.text is None:
        return
    rel = os.path.relpath(path, workdir) if workdir and _inside(path, workdir) else path.name
    value = _hash_of(r.text)
    if value and path.name == "PASSWORD":
        b.add(_slug(rel), path, "password_file", None, value, words, project=project,
              workdir=workdir)
        return
    if value and len(r.text.strip().splitlines()) == 1:
        b.add(_slug(re.sub(r"\.token$", "", rel)), path, "hash_file", None, value, words,
              project=project, workdir=workdir)
        return
    for key, h in _json_hash_keys(r.text):
        b.add(_slug(re.sub(r"\.(json|conf)$", "", rel)), path, "json", key, h,
              f"{words} (key {shown(key, 40)})", project=project, workdir=workdir)


def _add_env(b: _Builder, path: Path, words: str, project: str | None, workdir: Path | None,
             service: str | None) -> None:
    """The keys of an env file that hold a hash (`env`) or a raw password verifying one
    of the hashes found (`raw_env`)."""
    existing = [loc for loc in b.locations if os.path.abspath(loc.path) ==
                os.path.abspath(path)]
    if existing:  # read already: only add the evidence
        for loc in existing:
            if not any(e.startswith(words) for e in loc.evidence) and words != SCANNED:
                loc.evidence.append(words)
        return
    r = _read_small(path)
    if r.text is None:
        return
    rel = os.path.relpath(path, workdir) if workdir and _inside(path, workdir) else path.name
    base = "env" if rel == ".env" else _slug(rel)
    entries: dict[str, envfile.EnvEntry] = {}
    for e in envfile.entries(r.text):
        entries[e.key] = e  # the last one is in force
    raws: list[envfile.EnvEntry] = []
    for key, e in entries.items():
        value = e.value.strip()
        if BCRYPT_RE.match(value):
            b.add(f"{base}-{_slug(key)}", path, "env", key, value,
                  f"{words}: {shown(key, 40)} holds a bcrypt hash", project=project,
                  workdir=workdir)
        elif RAW_KEY.search(key):
            raws.append(e)
    for e in raws:
        h = b.raw_matches(e.value.strip())
        if h is not None:
            loc = b.add(f"{base}-{_slug(e.key)}", path, "raw_env", e.key, None,
                        f"{words}: {shown(e.key, 40)} holds the raw password of "
                        f"{fingerprint(h)}", project=project, workdir=workdir)
            loc.fingerprint = f"raw→{fingerprint(h)}"
            b.hashes.setdefault(f"\0raw:{loc.name}", h)


def _finish_tokens(prop: Proposal, b: _Builder) -> None:
    """Canonical location (the value most copies share, a hash file first) and the
    services whose PASSWORD is among the copies."""
    names = {s.name for s in prop.services}
    counts: dict[str, int] = {}
    for h in b.hashes.values():
        counts[h] = counts.get(h, 0) + 1
    if counts:
        top = max(counts.values())
        best = [h for h, n in counts.items() if n == top]
        cands = [loc for loc in prop.locations if loc.format != "raw_env"
                 and b.hashes.get(loc.name) in best]
        cands.sort(key=lambda loc: (FORMAT_ORDER.index(loc.format), ".secrets" not in
                                    str(loc.path), len(str(loc.path))))
        prop.canonical = cands[0].name if cands else None
        if len(counts) > 1:
            prop.warnings.append(
                f"the copies hold {len(counts)} different values; canonical guess: "
                f"{shown(prop.canonical, 60)} (the value most copies share) — check it "
                "before a unify")
    elif prop.locations:
        prop.canonical = prop.locations[0].name
    with_password = {s for loc in prop.locations if loc.format == "password_file"
                     for s in loc.services}
    prop.restart_after_unify = [s.name for s in prop.services
                                if s.name in with_password and s.name in names]


def _warn(prop: Proposal) -> None:
    if not prop.comfyui and prop.ambiguous:
        prop.warnings.insert(0, "no ComfyUI proposed: the services found are ambiguous "
                             "(see below) — choose the project with --project")
    elif not prop.comfyui:
        prop.warnings.insert(0, f"no ComfyUI found on this host ({prop.inspected} "
                             "container(s) inspected): nothing answers /system_stats with "
                             "comfyui_version or ComfyUI-Login's 401, and no "
                             "custom_nodes/ComfyUI-Login is mounted")
    for s in prop.comfyui:
        if not any(s.name in loc.services for loc in prop.locations
                   if loc.format == "password_file"):
            prop.warnings.append(f"{shown(s.name, 60)}: no login/PASSWORD on a volume or "
                                 "bind mount (a recreated container loses its password)"
                                 if s.auth else f"{shown(s.name, 60)}: no ComfyUI-Login "
                                 "seen (auth = false)")
    for loc in prop.locations:
        if loc.outside_project:
            loc.evidence.append("outside the compose project's folder")
            prop.warnings.append(f"{shown(loc.name, 60)}: {shown(loc.path, 200)} is outside "
                                 f"the compose project's folder")
        if loc.state == "symlink":
            prop.warnings.append(f"{shown(loc.name, 60)}: {shown(loc.path, 200)} is a "
                                 "symlink: not read; unify refuses it unless "
                                 "follow_symlinks = true")
        elif loc.state in ("unreadable", "invalid"):
            prop.warnings.append(f"{shown(loc.name, 60)}: {shown(loc.path, 200)} "
                                 f"is {loc.state}")
        if _INTERPOLATION.search(str(loc.path)):
            prop.warnings.append(f"{shown(loc.name, 60)}: its path holds `${{`, which the "
                                 "config would read as a variable: left out of the TOML")
    several = {loc.project for loc in prop.locations if loc.project}
    if len(several) > 1:
        prop.warnings.append(f"credential copies of {len(several)} compose projects "
                             f"({', '.join(shown(p, 40) for p in sorted(several))}) would be "
                             "unified as one: use --project")


def propose(docker_host: str | None = None, projects: Sequence[str] = (), *,
            deadline: float = 6.0) -> Proposal:
    """Inspect the engine, probe the published ports, read the copies: the proposal (its
    `error` says which engine could not be reached)."""
    engine = engine_description(docker_host)
    containers, error = inspect_engine(docker_host)
    if error:
        return Proposal(engine=engine, error=error)
    wanted = [c for c in containers
              if not projects or _labels(c).get(PROJECT) in projects]
    urls = [u for c in wanted if (c.get("State") or {}).get("Status") == "running"
            for _, u in _urls(c)]
    answers = probe_ports(urls, deadline=deadline)
    return analyse(wanted, answers, engine=engine, projects=projects)


# ------------------------------------------------------------------ TOML


def toml_str(value: str) -> str:
    """A TOML basic string: quotes, backslashes and every non-printable character
    escaped, so a hostile name cannot end the string or hide in the file."""
    out = ['"']
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch.isprintable() and ch != "\x7f":
            out.append(ch)
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(f"\\U{ord(ch):08X}")
    out.append('"')
    return "".join(out)


def _path_for(path: Path, base: Path) -> str:
    """Relative to the config's folder when inside it (portable), else absolute."""
    ap = os.path.abspath(path)
    if _inside(Path(ap), base):
        return os.path.relpath(ap, os.path.abspath(base))
    return ap


def to_toml(p: Proposal, config_dir: Path) -> str:
    """The config file `genai_tui.config.load_file` reads back as this proposal (paths
    relative to `config_dir` when inside it). Every guess carries its evidence as a
    comment; no value of a secret is in it."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    lines = [f"# genai-tui config proposed by `genai-tui init` on {stamp}",
             f"# from the Docker engine at {_comment(p.engine)}; check every guess below.", ""]
    for w in p.warnings:
        lines.append(f"# warning: {_comment(w)}")
    if p.warnings:
        lines.append("")
    for s in p.services:
        for ev in s.evidence:
            lines.append(f"# {_comment(ev)}")
        lines += ["[[services]]", f"name = {toml_str(s.name)}",
                  f"container = {toml_str(s.container)}", f"url = {toml_str(s.url or '')}",
                  f"kind = {toml_str(s.kind)}", f"auth = {'true' if s.auth else 'false'}"]
        if s.health_path != "/health":
            lines.append(f"health_path = {toml_str(s.health_path)}")
        lines.append("")
    locations = [loc for loc in p.locations if not _INTERPOLATION.search(str(loc.path))]
    names = {loc.name for loc in locations}
    services = {s.name for s in p.services}
    if locations:
        lines.append("[tokens]")
        if p.canonical in names:
            lines.append(f"canonical = {toml_str(p.canonical or '')}")
        restart = [n for n in p.restart_after_unify if n in services]
        lines.append("restart_after_unify = [" + ", ".join(toml_str(n) for n in restart) + "]")
        lines.append("")
        for loc in locations:
            held = loc.fingerprint if loc.fingerprint else loc.state
            for ev in loc.evidence:
                lines.append(f"# {_comment(ev)}")
            lines.append(f"#   {loc.format}: {_comment(held)}")
            lines += ["[[tokens.locations]]", f"name = {toml_str(loc.name)}",
                      f"path = {toml_str(_path_for(loc.path, config_dir))}",
                      f"format = {toml_str(loc.format)}"]
            if loc.key:
                lines.append(f"key = {toml_str(loc.key)}")
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _comment(text: object) -> str:
    return shown(text, 300)


# ------------------------------------------------------------------ writing


@dataclass
class WriteResult:
    path: Path
    backup: Path | None


def write_config(text: str, path: Path, *, now: float | None = None) -> WriteResult:
    """Write `text` to `path` atomically (temporary file in the same folder, fsync,
    rename), mode 0600; an existing file is first copied to `PATH.bak.<timestamp>`
    (0600). A symlink or anything but a regular file at `path` is refused."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise WriteRefused(f"{shown(path, 200)}: {fsutil.reason(exc)}") from None
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise WriteRefused(f"{shown(path, 200)} is a symlink: not written through (write "
                           "to the file it points to, or remove the link)")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise WriteRefused(f"{shown(path, 200)} is {fsutil.kind_of(st.st_mode)}, not a "
                           "regular file: not replaced")
    if not folder.is_dir():
        raise WriteRefused(f"{shown(folder, 200)}: no such folder")
    backup = None
    try:
        dfd = fsutil.open_dir(folder)
    except OSError as exc:
        raise WriteRefused(f"{shown(folder, 200)}: {fsutil.reason(exc)}") from None
    try:
        if st is not None:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
            bname = f"{path.name}.bak.{stamp}"
            n = 1
            while os.path.lexists(folder / bname):
                n += 1
                bname = f"{path.name}.bak.{stamp}-{n}"
            try:
                old, _ = fsutil.read_regular(path.name, 16 << 20, follow=False, dir_fd=dfd)
                fsutil.replace_at(dfd, bname, old, 0o600)
            except OSError as exc:
                raise WriteRefused(f"no backup of {shown(path, 200)} could be made "
                                   f"({fsutil.reason(exc)}): nothing written") from None
            backup = folder / bname
        try:
            fsutil.replace_at(dfd, path.name, text.encode("utf-8"), 0o600)
        except OSError as exc:
            raise WriteRefused(f"cannot write {shown(path, 200)}: {fsutil.reason(exc)}")\
                from None
    finally:
        os.close(dfd)
    return WriteResult(path, backup)
