"""Docker: the stack's containers, live from the events stream, and restarts.

Events drive everything (one filtered stream, lifecycle and health only); a slow full
re-sync is the safety net. No stats streams. Every blocking call runs on our own threads,
and `close()` shuts the stream socket so quitting never waits on the engine.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genai_tui.config import Config, DockerConfig, ServiceConfig
from genai_tui.model import MISSING, ContainerInfo, DockerStatus, PortBinding
from genai_tui.safety import one_line, shown
from genai_tui.sources.docker_light import (
    EngineError,
    LightClient,
    engine_errors,
    is_not_found,
    light_client,
)

# docker-py (requests, urllib3) loads with the first client, in a worker after the first
# frame: the dashboard paints before it is imported
if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)

EVENT_ACTIONS = (
    "create", "start", "die", "stop", "kill", "oom", "restart", "destroy",
    "health_status", "pause", "unpause", "rename",
)
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_ONEOFF = "com.docker.compose.oneoff"
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_WORKDIR = "com.docker.compose.project.working_dir"
#: ContainerInfo.state when two or more containers match and none is preferred
AMBIGUOUS = "ambiguous"
DEFAULT_HOST = "unix:///var/run/docker.sock"

Listener = Callable[[DockerStatus, list[ContainerInfo]], None]
#: what the engine's listing gives as `Id`; anything shorter would be a prefix lookup
FULL_ID = re.compile(r"[0-9a-f]{64}")


def make_client(cfg: DockerConfig) -> docker.DockerClient:
    """A client for `[docker] host`, else DOCKER_HOST / the active context."""
    import docker

    if cfg.host:
        return docker.DockerClient(base_url=cfg.host, timeout=int(cfg.timeout))
    return docker.from_env(timeout=int(cfg.timeout))


def engine_address(cfg: DockerConfig) -> str:
    """The engine a client for `cfg` talks to, as the admin would write it: `[docker]
    host`, else DOCKER_HOST, else the active CLI context, else the default socket."""
    if cfg.host:
        return one_line(cfg.host, 200)
    env = os.environ.get("DOCKER_HOST")
    if env:
        return one_line(env, 200)
    try:
        from docker.context import ContextAPI

        host = ContextAPI.get_current_context().Host
    except Exception:  # a broken CLI config: from_env falls back to the default too
        host = None
    return one_line(host or DEFAULT_HOST, 200)


def unreachable(cfg: DockerConfig, exc: BaseException) -> str:
    """"Docker engine unreachable: <why> (at <where>)": the address it tried is the first
    thing to check (a wrong DOCKER_HOST, a socket not mounted in this container)."""
    return f"Docker engine unreachable: {describe_error(exc)} (at {engine_address(cfg)})"


def describe_error(exc: BaseException) -> str:
    """A one-line reason for an engine failure, without the library's noise."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        for arg in getattr(cur, "args", ()):
            if isinstance(arg, BaseException):
                inner = describe_error(arg)
                if inner:
                    return inner
        if isinstance(cur, OSError) and cur.strerror:
            return cur.strerror
        cur = cur.__cause__ or cur.__context__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text.replace("Error while fetching server API version: ", "")
    return one_line(text, 200)


def _parse_time(value: str | None) -> datetime | None:
    if not value or value.startswith("0001-01-01"):
        return None
    try:
        # Docker gives nanoseconds; Python keeps microseconds.
        head, _, frac = value.rstrip("Z").partition(".")
        frac = (frac + "000000")[:6]
        return datetime.fromisoformat(f"{head}.{frac}+00:00")
    except ValueError:
        return None


def _ports(attrs: dict[str, Any]) -> list[PortBinding]:
    ports: list[PortBinding] = []
    raw = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    if not raw:  # a stopped container keeps its intent in HostConfig
        raw = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    for spec, bindings in sorted(raw.items()):
        port, _, proto = spec.partition("/")
        try:
            cport = int(port)
        except ValueError:
            continue
        if not bindings:
            ports.append(PortBinding(cport, proto or "tcp"))
            continue
        for b in bindings:
            try:
                hport = int(b.get("HostPort") or 0) or None
            except ValueError:
                hport = None
            binding = PortBinding(cport, proto or "tcp", b.get("HostIp") or "", hport)
            if binding not in ports and not (binding.host_ip == "::" and any(
                    p.host_port == hport and p.container_port == cport for p in ports)):
                ports.append(binding)
    return ports


def _health_checked_at(health: dict[str, Any]) -> datetime | None:
    log_ = health.get("Log") or []
    last = log_[-1] if log_ and isinstance(log_[-1], dict) else {}
    return _parse_time(last.get("End") or last.get("Start"))


def _start_period(config: dict[str, Any]) -> float | None:
    ns = _int((config.get("Healthcheck") or {}).get("StartPeriod"))
    return ns / 1e9 if ns else None


def container_info(service: ServiceConfig, attrs: dict[str, Any]) -> ContainerInfo:
    """Map `docker inspect` output to the snapshot of one service."""
    state = attrs.get("State") or {}
    health = state.get("Health") or {}
    config = attrs.get("Config") or {}
    labels = config.get("Labels") or {}
    status = state.get("Status") or "unknown"
    return ContainerInfo(
        service=service.name,
        container=(attrs.get("Name") or "").lstrip("/") or service.container_name,
        id=attrs.get("Id"),
        state=status,
        health=health.get("Status") or None,
        failing_streak=int(health.get("FailingStreak") or 0),
        started_at=_parse_time(state.get("StartedAt")),
        finished_at=_parse_time(state.get("FinishedAt")),
        created_at=_parse_time(attrs.get("Created")),
        restart_count=int(attrs.get("RestartCount") or 0),
        exit_code=None if status in ("running", "created") and not state.get("ExitCode")
        else state.get("ExitCode"),
        oom_killed=bool(state.get("OOMKilled")),
        ports=_ports(attrs),
        image=config.get("Image") or "",
        pid=state.get("Pid") or None,
        cmd_args=list(config.get("Cmd") or []),
        state_error=shown(state.get("Error") or "", 300),
        start_period=_start_period(config),
        health_checked_at=_health_checked_at(health) if health else None,
        network_mode=str((attrs.get("HostConfig") or {}).get("NetworkMode") or ""),
        project=labels.get(COMPOSE_PROJECT) or None,
        restart_policy=str(((attrs.get("HostConfig") or {}).get("RestartPolicy") or {})
                           .get("Name") or "no"),
    )



def _event_time(event: dict[str, Any]) -> datetime:
    ns = _int(event.get("timeNano"))
    return datetime.fromtimestamp(ns / 1e9, UTC) if ns else datetime.now(UTC)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def missing_info(service: ServiceConfig) -> ContainerInfo:
    return ContainerInfo(service=service.name, container=service.container_name, state=MISSING)


def match_service(services: Iterable[ServiceConfig], name: str,
                  labels: dict[str, str]) -> ServiceConfig | None:
    """The configured service a container belongs to: by name, else by compose label."""
    name = name.lstrip("/")
    docker_services = [s for s in services if s.runtime == "docker"]
    for s in docker_services:
        if s.container_name == name:
            return s
    if labels.get(COMPOSE_ONEOFF, "False") == "True":
        return None  # `compose run` one-offs are not the service
    compose = labels.get(COMPOSE_SERVICE)
    if compose:
        for s in docker_services:
            if compose in (s.container_name, s.name):
                return s
    return None


def _name(attrs: dict[str, Any]) -> str:
    """An inspected container's name, without Docker's leading slash."""
    return str(attrs.get("Name") or "").lstrip("/")


def _printable(text: str, limit: int = 120) -> str:
    return one_line(text, limit)


@dataclasses.dataclass(frozen=True)
class Resolution:
    """Which container is a service's, and the look-alikes that were not chosen."""

    cid: str | None
    reason: str
    #: every other container carrying its compose service label, as "project/name"
    lookalikes: tuple[str, ...] = ()
    ambiguous: bool = False
    item: dict[str, Any] | None = None
    #: chosen by its exact name (not by compose label)
    exact: bool = False


def _tag(name: str, labels: dict[str, str]) -> str:
    project = labels.get(COMPOSE_PROJECT)
    return f"{project}/{name}" if project else name


def _pool(services: Iterable[ServiceConfig], service: ServiceConfig) -> list[ServiceConfig]:
    """The docker services a container may belong to, `service` among them even when the
    config does not hold it (a log source's own)."""
    pool = [s for s in services if s.runtime == "docker"]
    if not any(s.name == service.name for s in pool):
        pool.append(service)
    return pool


def choose(services: Iterable[ServiceConfig], service: ServiceConfig,
           listing: Iterable[dict[str, Any]], *, project: str | None = None,
           folder: Path | str | None = None) -> Resolution:
    """`service`'s container in a `containers(all=True)` listing, never by ID prefix and
    never a guess: the container with the exact name; else, among the non-oneoff
    containers carrying its compose service label, the one in `project` (then: only
    those count), else the one whose compose folder is `folder` (the config's), else the
    only one. Two or more left with nothing to prefer: none (`ambiguous`)."""
    want = service.container_name
    pool = _pool(services, service)
    exact: tuple[str, dict[str, Any]] | None = None
    by_label: list[tuple[str, str, dict[str, Any]]] = []
    for item in listing:
        cid = item.get("Id")
        if not isinstance(cid, str) or not FULL_ID.fullmatch(cid):
            continue
        names = [n for n in item.get("Names") or [] if isinstance(n, str)]
        labels = item.get("Labels") or {}
        if "/" + want in names:
            exact = exact or (cid, item)
            continue
        for name in names:
            svc = match_service(pool, name, labels)
            if svc is not None and svc.name == service.name:
                by_label.append((cid, _tag(name.lstrip("/"), labels), item))
                break
    if exact is not None:
        return Resolution(exact[0], f"container {want!r}",
                          tuple(sorted(t for _, t, _ in by_label)), item=exact[1],
                          exact=True)
    tags = tuple(sorted(t for _, t, _ in by_label))
    picked = by_label
    if project:
        picked = [c for c in by_label
                  if (c[2].get("Labels") or {}).get(COMPOSE_PROJECT) == project]
        if not picked:
            return Resolution(None, _printable(
                f"no container {want!r} in compose project {project!r}"
                + (f" (look-alikes elsewhere: {', '.join(tags)})" if tags else ""), 300),
                tags)
    elif len(by_label) > 1 and folder is not None:
        here = [c for c in by_label
                if (c[2].get("Labels") or {}).get(COMPOSE_WORKDIR) == str(folder)]
        if len(here) == 1:
            picked = here
    if len(picked) == 1:
        cid, tag, item = picked[0]
        others = tuple(t for t in tags if t != tag)
        return Resolution(cid, f"container {tag!r} (compose service label)", others,
                          item=item)
    if picked:
        shown = ", ".join(sorted(t for _, t, _ in picked))
        return Resolution(None, _printable(
            f"ambiguous: no container is named {want!r} and {len(picked)} carry its "
            f"compose service label ({shown}); set `container` to the exact name", 300),
            tuple(sorted(t for _, t, _ in picked)), ambiguous=True)
    return Resolution(None, _printable(f"no container {want!r} (none by that exact name or "
                                       "compose service label)", 300))


def settle(services: Iterable[ServiceConfig], service: ServiceConfig,
           listing: list[dict[str, Any]],
           inspect: Callable[[str], dict[str, Any] | None], *,
           project: str | None = None, folder: Path | str | None = None
           ) -> tuple[Resolution, dict[str, Any] | None]:
    """`choose`, then the chosen container's `inspect` (None: gone). The engine's
    listing can still carry a name a rename has just taken away (20.10 lists the
    container under both names for a moment after its `rename` event); the inspect is
    what holds, so a container it shows under another name is chosen again without the
    stale one."""
    services = list(services)
    r = choose(services, service, listing, project=project, folder=folder)
    attrs = None if r.cid is None else inspect(r.cid)
    if attrs is not None and r.exact and _name(attrs) not in ("", service.container_name):
        stale = "/" + service.container_name
        listing = [dict(item, Names=[n for n in item.get("Names") or [] if n != stale])
                   if item.get("Id") == r.cid else item for item in listing]
        r = choose(services, service, listing, project=project, folder=folder)
        attrs = None if r.cid is None else inspect(r.cid)
    return r, attrs


def ambiguous_info(service: ServiceConfig, lookalikes: tuple[str, ...]) -> ContainerInfo:
    """A service that two or more containers could be: shown, never acted on."""
    return ContainerInfo(service=service.name, container=service.container_name,
                         state=AMBIGUOUS, lookalikes=lookalikes)


class RestartTracker:
    """Marks a service as looping when it started N times within a window."""

    def __init__(self, count: int, window: float) -> None:
        self.count = count
        self.window = window
        self._starts: dict[str, deque[float]] = {}

    def record_start(self, service: str, at: float | None = None) -> None:
        q = self._starts.setdefault(service, deque(maxlen=max(self.count * 4, 16)))
        q.append(time.monotonic() if at is None else at)

    def looping(self, service: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        q = self._starts.get(service)
        if not q:
            return False
        return sum(1 for t in q if now - t <= self.window) >= self.count


class DockerSource:
    """Blocking queries and actions on the stack's containers (call from a thread)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._client: docker.DockerClient | None = None
        #: reads (list, inspect, version) over a local socket need no docker-py
        self._reader: LightClient | None = light_client(config.docker)
        self._lock = threading.Lock()

    @property
    def services(self) -> list[ServiceConfig]:
        return [s for s in self.config.services if s.runtime == "docker"]

    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                self._client = make_client(self.config.docker)
            return self._client

    def reader(self) -> LightClient | docker.DockerClient:
        """What reads the engine: the standard-library client on a local socket, else
        docker-py's (a remote, TLS or SSH engine)."""
        return self._reader if self._reader is not None else self.client()

    def reset(self) -> None:
        with self._lock:
            if self._client is not None:
                try:
                    self._client.close()
                except Exception:  # closing a broken client must not mask the real error
                    pass
            self._client = None

    def close(self) -> None:
        self.reset()

    def status(self) -> DockerStatus:
        try:
            version = self.reader().version()
            return DockerStatus(True, None, version.get("Version"))
        except Exception as exc:
            self.reset()
            return DockerStatus(False, unreachable(self.config.docker, exc))

    def resolve(self, service: ServiceConfig) -> tuple[str | None, str]:
        """The service's container as a full ID from the engine's own listing (see
        `settle`), or (None, why not); raises on an unreachable engine."""
        r, _ = self._settle(service)
        return r.cid, r.reason

    def _settle(self, service: ServiceConfig,
                listing: list[dict[str, Any]] | None = None
                ) -> tuple[Resolution, dict[str, Any] | None]:
        """`settle` with this config's project (the service's, else `[docker] project`)
        and folder; lists the engine's containers when no listing is given."""
        if listing is None:
            listing = self.reader().api.containers(all=True)
        return settle(self.services, service, listing, self._attrs,
                      project=service.project or self.config.docker.project,
                      folder=self.config.base_dir)

    def _attrs(self, container_id: str) -> dict[str, Any] | None:
        """`docker inspect` of one container, None when it is gone (either client's 404)."""
        try:
            return self.reader().api.inspect_container(container_id)
        except Exception as exc:
            if not is_not_found(exc):
                raise
            return None

    def _inspect(self, service: ServiceConfig,
                 listing: list[dict[str, Any]] | None = None) -> ContainerInfo:
        r, attrs = self._settle(service, listing)
        if r.cid is None:
            return ambiguous_info(service, r.lookalikes) if r.ambiguous \
                else dataclasses.replace(missing_info(service), lookalikes=r.lookalikes)
        if attrs is None:
            return missing_info(service)
        info = container_info(service, attrs)
        info.lookalikes = r.lookalikes
        return info

    def find(self, service: ServiceConfig) -> dict[str, Any] | None:
        """`docker inspect` of the service's container, or None when there is none (or
        it is ambiguous); never an ID-prefix match."""
        return self._settle(service)[1]

    def list_stack(self) -> list[ContainerInfo]:
        """One entry per docker service; raises on an unreachable engine."""
        sparse = self.reader().api.containers(all=True)  # one call; inspect what matches
        return [self._inspect(svc, sparse) for svc in self.services]

    def inspect_service(self, service: ServiceConfig, container_id: str | None = None
                        ) -> ContainerInfo:
        """The service's container now: by `container_id` when given (the one already
        shown, or one with the exact name), else resolved afresh from the listing."""
        if container_id and FULL_ID.fullmatch(container_id):
            attrs = self._attrs(container_id)
            if attrs is not None and self._still_its(service, attrs):
                return container_info(service, attrs)
        return self._inspect(service)

    def _still_its(self, service: ServiceConfig, attrs: dict[str, Any]) -> bool:
        """Whether an inspected container still belongs to `service` (by name or compose
        label): an event read late may name a container renamed away since."""
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        svc = match_service(_pool(self.services, service),
                            _name(attrs) or service.container_name, labels)
        return svc is not None and svc.name == service.name

    def unpause(self, service: ServiceConfig) -> tuple[bool, str]:
        """Unpause the service's container (a paused one only needs that, not a restart
        that would kill its jobs); (ok, what happened) — never raises."""
        import docker.errors

        try:
            cid, reason = self.resolve(service)
            if cid is None:
                return False, reason
            self.client().api.unpause(cid)
            return True, "unpaused"
        except docker.errors.APIError as exc:
            return False, describe_error(exc)
        except Exception as exc:
            self.reset()
            return False, describe_error(exc)

    def restart(self, service: ServiceConfig) -> tuple[bool, str]:
        """Restart the service's container; (ok, what happened) — never raises."""
        import docker.errors

        try:
            cid, reason = self.resolve(service)
            if cid is None:
                return False, reason
            self.client().api.restart(cid, timeout=self.config.docker.stop_timeout)
            return True, "restarted"
        except docker.errors.NotFound:
            return False, f"container {service.container_name!r} went away before the restart"
        except Exception as exc:
            self.reset()
            return False, describe_error(exc)


class ContainerMonitor:
    """Keeps a live list of the stack's containers and calls `listener` on every change.

    Two daemon threads: one reads the events stream (with its own client, since a stream
    pins a connection), one re-syncs slowly. `listener` is called from those threads.
    """

    def __init__(self, config: Config, listener: Listener) -> None:
        self.config = config
        self.listener = listener
        self.source = DockerSource(config)
        self.tracker = RestartTracker(config.docker.restart_loop_count,
                                      config.docker.restart_loop_window)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._infos: dict[str, ContainerInfo] = {}
        self._status = DockerStatus(reachable=False, error="connecting to the Docker engine…")
        self._connected = threading.Event()
        self._stream: Any = None
        self._events_client: LightClient | docker.DockerClient | None = None
        self._threads: list[threading.Thread] = []
        self._last_action: dict[str, str] = {}
        self._oom: dict[str, str] = {}
        self._unpaused: dict[str, tuple[str, datetime]] = {}  # service -> (id, when)
        # service -> [id, first SIGTERM, SIGKILL seen since]; then (id, seconds, escalated)
        self._sigterm: dict[str, list[Any]] = {}
        self._stop_took: dict[str, tuple[str, float, bool]] = {}
        self.backoff = 0.0

    # -- lifecycle
    def start(self) -> None:
        for target, name in ((self._run_events, "docker-events"),
                             (self._run_resync, "docker-resync")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._close_stream()
        self.source.close()
        for t in self._threads:
            t.join(timeout)

    @property
    def status(self) -> DockerStatus:
        return self._status

    def infos(self) -> list[ContainerInfo]:
        with self._lock:
            return [self._infos[s.name] for s in self.source.services if s.name in self._infos]

    # -- state
    def _emit(self) -> None:
        if self._stop.is_set():
            return
        try:
            self.listener(self._status, self.infos())
        except Exception:  # a listener failing (app exiting) must not kill the thread
            log.debug("container listener failed", exc_info=True)

    def _store(self, info: ContainerInfo) -> None:
        info.looping = info.state == "restarting" or self.tracker.looping(info.service)
        with self._lock:
            old = self._infos.get(info.service)
            if old is not None and old.action and old.id == info.id:
                info.action = old.action
            unpaused = self._unpaused.get(info.service)
            if unpaused is not None and unpaused[0] == info.id and info.unpaused_at is None:
                info.unpaused_at = unpaused[1]
            kill = self._sigterm.get(info.service)
            if kill is not None and kill[0] == info.id and info.running \
                    and kill[2] is not None:
                info.stopping_since = kill[1]
            took = self._stop_took.get(info.service)
            if took is not None and took[0] == info.id and info.stop_took_s is None:
                info.stop_took_s, info.stop_escalated = took[1], took[2]
            self._infos[info.service] = info

    def set_action(self, service: str, action: str | None) -> None:
        with self._lock:
            info = self._infos.get(service)
            if info is not None:
                info.action = action
        self._emit()

    def full_sync(self) -> None:
        infos = self.source.list_stack()
        for info in infos:
            self._store(info)
        self._status = DockerStatus(True, None, self._status.server_version)
        self._emit()

    def refresh_service(self, service: ServiceConfig, container_id: str | None = None) -> None:
        self._store(self.source.inspect_service(service, container_id))
        self._emit()

    def handle_event(self, event: dict[str, Any]) -> None:
        if event.get("Type") != "container":
            return
        action = str(event.get("Action") or "")
        actor = event.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        name = (attrs.get("name") or "").lstrip("/")
        if action == "rename":
            self._on_rename(actor.get("ID"), name, attrs)
            return
        svc = match_service(self.source.services, name, attrs)
        if svc is None:
            return
        cid = actor.get("ID")
        with self._lock:
            current = self._infos.get(svc.name)
        if (name != svc.container_name and current is not None and current.id not in (None, cid)
                and current.container == svc.container_name):
            return  # a compose-label look-alike: the container with the exact name wins
        if action == "kill":
            # no state change to inspect (it would delay the `die` behind it); a SIGTERM
            # starts a stop that may take the whole grace period: say so at once
            signal = str(attrs.get("signal"))
            term = self._sigterm.get(svc.name)
            if term is not None and term[0] == cid and signal == "9":
                term[2] = True  # the grace ran out: `docker stop` escalated
            elif term is None and signal == "9" and isinstance(cid, str):
                self._sigterm[svc.name] = [cid, _event_time(event), None]  # docker kill
            elif signal == "15" and current is not None and current.id == cid \
                    and term is None:
                self._sigterm[svc.name] = [cid, _event_time(event), False]
                self._store(dataclasses.replace(current))
                self._emit()
            return
        if action == "oom":
            self._oom[svc.name] = cid
        if action == "unpause" and isinstance(cid, str):
            self._unpaused[svc.name] = (cid, _event_time(event))
        if name != svc.container_name and (current is None or current.id != cid):
            # a compose-label match that is not the container shown: resolve afresh, so
            # a look-alike (a staging copy) never silently takes the service over
            self.refresh_service(svc)
            return
        if action in ("stop", "die", "start"):
            self._record_lifecycle(svc.name, action)
        if action == "destroy":
            if current is not None and current.id not in (None, cid):
                return  # an older container of that name went away; the new one stays
            if name != svc.container_name:
                self.refresh_service(svc)  # another look-alike may now be the only one
                return
            self._store(missing_info(svc))
            self._emit()
            return
        if action in ("die", "start"):
            kill = self._sigterm.pop(svc.name, None)
            if action == "die" and kill is not None and kill[0] == cid:
                took = (_event_time(event) - kill[1]).total_seconds()
                # a SIGKILL with no SIGTERM before it (None) was meant: never escalated
                self._stop_took[svc.name] = (cid, max(0.0, took), kill[2] is True)
            elif action == "start":
                self._stop_took.pop(svc.name, None)
        if action == "die" and current is not None and current.id == cid:
            # show it at once: the engine answers inspect only ~100 ms later on a stop
            took = self._stop_took.get(svc.name)
            provisional = dataclasses.replace(
                current, state="exited", exit_code=_int(attrs.get("exitCode")),
                oom_killed=self._oom.pop(svc.name, None) == cid, stopping_since=None,
                stop_took_s=took[1] if took and took[0] == cid else None,
                stop_escalated=bool(took and took[0] == cid and took[2]))
            self._store(provisional)
            self._emit()
        self.refresh_service(svc, cid)

    def _on_rename(self, cid: Any, new: str, attrs: dict[str, Any]) -> None:
        """Re-resolve every service a rename can concern: the one showing this container
        (it may have lost it), and those whose container name it left or took."""
        old = str(attrs.get("oldName") or "").lstrip("/")
        names = {n for n in (new, old) if n}
        with self._lock:
            showing = {s for s, info in self._infos.items() if cid and info.id == cid}
        gained = match_service(self.source.services, new, attrs) if new else None
        touched = [s for s in self.source.services
                   if s.name in showing or s.container_name in names
                   or (gained is not None and s.name == gained.name)]
        for svc in touched:
            self._store(self.source.inspect_service(svc))
        if touched:
            self._emit()

    def _record_lifecycle(self, service: str, action: str) -> None:
        """Count a start as a restart only when the engine restarted it after a crash
        (`die` not followed by a user's `stop`), not when an admin started it."""
        last = self._last_action.get(service)
        if action == "start" and last == "die":
            self.tracker.record_start(service)
        self._last_action[service] = action

    # -- threads
    def _wait(self, seconds: float) -> bool:
        """Sleep unless stopping; True when it is time to stop."""
        return self._stop.wait(seconds)

    def _run_events(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                client = light_client(self.config.docker) or make_client(self.config.docker)
                self._events_client = client
                version = client.version()
                since = int(time.time()) - 1
                self._status = DockerStatus(True, None, version.get("Version"))
                # subscribed first, then the listing: whatever changes after the listing
                # comes as an event, whatever changed before it is in the listing (the
                # replay `since` alone missed a rename on a busy engine)
                self._stream = client.events(
                    decode=True, since=since,
                    filters={"type": "container", "event": list(EVENT_ACTIONS)})
                if self._stop.is_set():  # close() ran while we were connecting
                    break
                self.full_sync()
                self._connected.set()
                self.backoff = 0.0
                delay = 0.5
                for event in self._stream:
                    if self._stop.is_set():
                        break
                    try:
                        self.handle_event(event)
                    except engine_errors() as exc:
                        log.debug("event handling failed: %s", describe_error(exc))
                # the iterator ends silently when the daemon restarts: reconnect
                if not self._stop.is_set():
                    raise EngineError("events stream ended")
            except Exception as exc:
                self._connected.clear()
                if self._stop.is_set():
                    break
                self.source.reset()
                self._status = DockerStatus(False, unreachable(self.config.docker, exc))
                self.backoff = delay
                self._emit()
            finally:
                self._close_stream()
            if self._wait(delay):
                break
            delay = min(delay * 2, 30.0)

    def _run_resync(self) -> None:
        interval = self.config.docker.resync_interval
        while not self._wait(interval):
            if not self._connected.is_set():
                continue
            try:
                self.full_sync()
            except Exception as exc:
                log.debug("re-sync failed: %s", describe_error(exc))

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:  # closing twice or over a dead socket is harmless
                pass
        client, self._events_client = self._events_client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass

