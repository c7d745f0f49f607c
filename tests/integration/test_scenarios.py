"""Issue 7, for real: each failure is built with simulator containers, real token files and
real engine states, then `collect_once()` (what `genai-tui check` runs) must name exactly
the cause: the set of warning/critical `(code, service)` pairs is asserted whole, so a
finding that repeats a consequence (a stopped container also called `port_unreachable`)
fails the test as surely as a missing one.

Each scenario writes its own genai-tui TOML (services on the containers' published ports
and names, token locations in tmp_path) and loads it with `config.load_file`, as an admin's
file would be. Token files are written 0600: a world-readable copy is a finding of its own.
The test host's RAM is not part of any stack under test, so `[host] memory_warn_pct` is set
out of reach; `host_memory_high` and `gpu_memory_high` cannot be produced here without a
GPU or exhausting the machine, and are covered by tests/unit/test_diagnose.py.
"""

from __future__ import annotations

import http.client
import json
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from genai_tui import cli, simdocker
from genai_tui import config as configmod
from genai_tui.engine.collect import collect_once
from genai_tui.engine.live import Stack as LiveStack
from genai_tui.model import Finding, Severity, Snapshot
from tests.conftest import TEST_OWNER, free_port, make_hash, wait_for, wait_port

pytestmark = pytest.mark.docker

SECOND = 1_000_000_000  # Docker healthcheck durations are in nanoseconds


def health(path: str, port: int = 8188, *, interval: float = 0.5, retries: int = 1,
           start_period: float = 0.0) -> dict[str, Any]:
    """A fast Docker healthcheck running the host Python inside the container."""
    return {"test": simdocker.health_cmd(path, port), "interval": int(interval * SECOND),
            "timeout": 3 * SECOND, "retries": retries, "start_period": int(start_period * SECOND)}


def real_hash(raw: str) -> str:
    """A real bcrypt hash (cost 4: raw_env locations are checked with bcrypt.checkpw)."""
    return bcrypt.hashpw(raw.encode(), bcrypt.gensalt(4)).decode()


def write_secret(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(0o600)
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


class Stack:
    """One scenario's services and token locations, written as a genai-tui TOML file."""

    def __init__(self, root: Path, canonical_hash: str | None = None) -> None:
        self.root = root
        self.services: list[dict[str, Any]] = []
        self.locations: list[dict[str, Any]] = []
        self.canonical: str | None = None
        self.docker: dict[str, Any] = {}
        # short timeouts keep the hang scenario quick; the host is not under test
        self.sections: dict[str, dict[str, Any]] = {
            "probes": {"connect_timeout": 1.0, "read_timeout": 1.5},
            "host": {"memory_warn_pct": 100.0},
        }
        if canonical_hash is not None:
            self.hash_file("secrets", ".secrets/qwen-api-user.token", canonical_hash,
                           canonical=True)

    # token locations
    def location(self, name: str, path: Path, fmt: str, key: str | None = None,
                 canonical: bool = False) -> None:
        self.locations.append({"name": name, "path": str(path), "format": fmt,
                               **({"key": key} if key else {})})
        if canonical:
            self.canonical = name

    def hash_file(self, name: str, rel: str, hash_: str, *, canonical: bool = False,
                  newline: str = "\n") -> Path:
        path = write_secret(self.root / rel, hash_ + newline)
        self.location(name, path, "hash_file", canonical=canonical)
        return path

    def login_dir(self, service: str, hash_: str | None, *, newline: str = "\n",
                  track: bool = True) -> Path:
        """`<root>/login/<service>/PASSWORD` (hash line + user line), bind-mounted as the
        container's `login/`; tracked as a password_file location unless told not to."""
        d = self.root / "login" / service
        d.mkdir(parents=True)
        if hash_ is not None:
            write_secret(d / "PASSWORD", f"{hash_}{newline}admin")
            if track:
                self.location(f"{service}-password", d / "PASSWORD", "password_file")
        return d

    # services
    def service(self, name: str, port: int, container: str, *, kind: str = "comfyui",
                auth: bool | None = None, health_path: str = "/health") -> None:
        self.services.append({"name": name, "url": f"http://127.0.0.1:{port}", "kind": kind,
                              "container": container,
                              "auth": kind == "comfyui" if auth is None else auth,
                              "health_path": health_path})

    def write(self) -> Path:
        lines = ["# genai-tui scenario stack (tests/integration/test_scenarios.py)", ""]
        if self.docker:
            lines.append("[docker]")
            lines += [f"{k} = {_toml(v)}" for k, v in self.docker.items()]
            lines.append("")
        for name, table in self.sections.items():
            lines.append(f"[{name}]")
            lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
            lines.append("")
        for svc in self.services:
            lines.append("[[services]]")
            lines += [f"{k} = {_toml(v)}" for k, v in svc.items()]
            lines.append("")
        lines.append("[tokens]")
        if self.canonical:
            lines.append(f"canonical = {_toml(self.canonical)}")
        lines.append(f"backup_dir = {_toml(str(self.root / 'backups'))}")
        lines.append(f"audit_log = {_toml(str(self.root / 'audit.jsonl'))}")
        lines.append("")
        for loc in self.locations:
            lines.append("[[tokens.locations]]")
            lines += [f"{k} = {_toml(v)}" for k, v in loc.items()]
            lines.append("")
        path = self.root / "genai-tui.toml"
        path.write_text("\n".join(lines))
        return path

    def config(self) -> configmod.Config:
        return configmod.load_file(self.write())

    def collect(self) -> Snapshot:
        """`collect_once` (what `check` runs), after proving that a live `Stack` (what the
        dashboard runs) settles to the same warning/critical findings: the parity test,
        run for every scenario."""
        config = self.config()
        once = collect_once(config)
        assert_live_agrees(config, once)
        return once


# ------------------------------------------------------------------ assertions

PARITY = {"scenarios": 0}


def assert_live_agrees(config: configmod.Config, once: Snapshot, timeout: float = 30.0) -> None:
    """A live Stack on the same config (monitors, polls and log streams all running)
    reaches the findings `collect_once` gave; it may take a few rounds to see everything."""
    stack = LiveStack(config)
    stack.start()
    try:
        assert stack.wait_settled(timeout), "the live stack never settled"
        deadline = time.monotonic() + timeout
        while bad(stack.snapshot) != bad(once) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert bad(stack.snapshot) == bad(once), (
            "live Stack and collect_once disagree\n--- live:\n" + describe(stack.snapshot)
            + "\n--- collect_once:\n" + describe(once))
        PARITY["scenarios"] += 1
    finally:
        stack.close()


def bad(snap: Snapshot) -> set[tuple[str, str | None]]:
    """Every warning or critical finding as (code, service)."""
    return {(f.code, f.service) for f in snap.findings if f.severity is not Severity.INFO}


def finding(snap: Snapshot, code: str) -> Finding:
    return next(f for f in snap.findings if f.code == code)


def describe(snap: Snapshot) -> str:
    """What the snapshot says, for assertion messages (fingerprints only, never a hash)."""
    out = [f"{f.severity.value} {f.code} [{f.service}] {f.message}" for f in snap.findings]
    out += [f"container {c.service}: {c.state} health={c.health} restarts={c.restart_count} "
            f"exit={c.exit_code} oom={c.oom_killed}" for c in snap.containers]
    out += [f"probe {p.service}: {p.outcome} auth={p.auth} status={p.status} {p.detail}"
            for p in snap.probes]
    return "\n".join(out)


def assert_findings(snap: Snapshot, expected: set[tuple[str, str | None]]) -> None:
    assert bad(snap) == expected, describe(snap)


def probe(snap: Snapshot, service: str):
    return next(p for p in snap.probes if p.service == service)


# ------------------------------------------------------------------ container helpers


def state(container) -> dict[str, Any]:
    container.reload()
    return container.attrs["State"]


def wait_state(container, pred: Callable[[dict[str, Any]], object],
               timeout: float = 30.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        s = state(container)
        return s if pred(s) else None

    return wait_for(check, timeout, 0.2)


def wait_health(container, status: str, timeout: float = 30.0) -> dict[str, Any]:
    return wait_state(container, lambda s: (s.get("Health") or {}).get("Status") == status,
                      timeout)


def wait_log(container, text: str, timeout: float = 20.0) -> None:
    wait_for(lambda: text in container.logs().decode("utf-8", "replace"), timeout, 0.1)


def started_at(container) -> datetime:
    raw = state(container)["StartedAt"]
    head, _, frac = raw.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")


def start_sim(sim_container, stack: Stack, service: str, *, kind: str = "comfyui",
              hash_: str | None = None, login: bool = True, scenario: str = "healthy",
              config_kind: str | None = None, health_path: str = "/health",
              wait: bool = True, password_newline: str = "\n", **kwargs: Any):
    """Start one simulator container on a known free host port and add it to the stack.
    ComfyUI containers get `login/` bind-mounted with a PASSWORD holding `hash_`."""
    port = free_port()
    container_port = {"comfyui": 8188, "orchestrator": 8090, "stub": 8000}[kind]
    login_dir = (stack.login_dir(service, hash_, newline=password_newline)
                 if kind == "comfyui" and login else None)
    extra = ["--name", service, *kwargs.pop("extra_args", [])]
    c = sim_container(kind=kind, scenario=scenario, host_port=port,
                      container_port=container_port, login_dir=login_dir, extra_args=extra,
                      **kwargs)
    stack.service(service, port, c.name,
                  kind=config_kind or {"stub": "http"}.get(kind, kind),
                  health_path=health_path)
    if wait:
        wait_port(port)
    return c


@pytest.fixture
def network(docker_client) -> Iterator[str]:
    """A user network so the orchestrator reaches the others by container name."""
    net = docker_client.networks.create(simdocker.unique("gtnet"),
                                        labels={simdocker.OWNER_LABEL: TEST_OWNER})
    yield net.name
    try:
        net.reload()
        for c in net.containers:
            c.remove(force=True)
        net.remove()
    except Exception:
        pass


# ------------------------------------------------------------------ the engine itself


def test_docker_unreachable_is_one_finding_and_exit_unknown(tmp_path):
    a = make_hash()
    stack = Stack(tmp_path, a)
    stack.docker = {"host": f"unix://{tmp_path}/no-engine.sock", "timeout": 2}
    stack.service("qwen", free_port(), "gt-never-created")
    snap = stack.collect()
    assert not snap.docker.reachable
    # the service's port is refused too, but the engine being down says it all
    assert probe(snap, "qwen").outcome == "refused"
    assert_findings(snap, {("docker_unreachable", None)})
    assert cli.exit_status(snap, stack.config()) == cli.EXIT_UNKNOWN


def test_container_missing(docker_client, tmp_path):
    stack = Stack(tmp_path, make_hash())
    stack.service("qwen", free_port(), simdocker.unique("gt-absent"))
    snap = stack.collect()
    assert_findings(snap, {("container_missing", "qwen")})
    assert finding(snap, "container_missing").fix == "compose_up"
    assert cli.exit_status(snap, stack.config()) == cli.EXIT_CRITICAL


# ------------------------------------------------------------------ container states


def test_stopped_container_is_exited_not_also_port_unreachable(sim_container, tmp_path):
    a = make_hash()
    stack = Stack(tmp_path, a)
    c = start_sim(sim_container, stack, "qwen", hash_=a)
    c.stop(timeout=5)
    wait_state(c, lambda s: s["Status"] == "exited")
    snap = stack.collect()
    assert probe(snap, "qwen").outcome == "refused"  # the consequence, not repeated
    assert_findings(snap, {("container_exited", "qwen")})
    f = finding(snap, "container_exited")
    assert "exited with code 0" in f.message and f.fix == "restart"


def test_crashed_container_is_exited_with_its_code(sim_container, tmp_path):
    a = make_hash()
    stack = Stack(tmp_path, a)
    c = start_sim(sim_container, stack, "qwen", hash_=a, scenario="crash", wait=False,
                  extra_args=["--delay", "0.5"])
    wait_state(c, lambda s: s["Status"] == "exited")
    snap = stack.collect()
    assert_findings(snap, {("container_exited", "qwen")})
    assert "exited with code 1" in finding(snap, "container_exited").message


def test_restart_loop(sim_container, tmp_path):
    a = make_hash()
    stack = Stack(tmp_path, a)
    c = start_sim(sim_container, stack, "qwen", hash_=a, scenario="crash", wait=False,
                  extra_args=["--delay", "0.3"], restart_policy={"Name": "always"})
    wait_for(lambda: (c.reload(), c.attrs["RestartCount"] >= 3)[1], timeout=60, interval=0.2)
    snap = stack.collect()
    assert_findings(snap, {("restart_loop", "qwen")})
    info = snap.containers[0]
    assert info.looping and info.restart_count >= 3
    assert "restart loop" in finding(snap, "restart_loop").message


def test_oom_killed(sim_container, tmp_path):
    a = make_hash()
    stack = Stack(tmp_path, a)
    c = start_sim(sim_container, stack, "qwen", hash_=a, scenario="oom", mem_limit="48m",
                  wait=False)
    wait_state(c, lambda s: s["Status"] == "exited", timeout=60)
    snap = stack.collect()
    info = snap.containers[0]
    assert info.oom_killed and info.exit_code == 137
    assert_findings(snap, {("oom_killed", "qwen")})


def test_unhealthy_while_the_service_answers(sim_container, tmp_path):
    """A stub whose healthcheck probes a path it does not serve: Docker says unhealthy,
    the service's own /health answers."""
    stack = Stack(tmp_path, make_hash())
    c = start_sim(sim_container, stack, "sd35", kind="stub",
                  healthcheck=health("/no-such-path", 8000))
    wait_health(c, "unhealthy")
    snap = stack.collect()
    assert probe(snap, "sd35").outcome == "ok"
    assert_findings(snap, {("unhealthy", "sd35")})


def test_health_starting_long_for_a_service_that_never_listens(sim_container, tmp_path):
    """Failure mode 2: start_period longer than the service takes to come up (here: never).
    The port is published (docker-proxy answers empty), health stays `starting`."""
    a = make_hash()
    stack = Stack(tmp_path, a)
    stack.docker = {"health_starting_max": 1}
    c = start_sim(sim_container, stack, "qwen", hash_=a, scenario="no_listen", wait=False,
                  healthcheck=health("/login", start_period=600))
    wait_log(c, "Starting server")
    wait_health(c, "starting")
    time.sleep(max(0.0, 1.5 - (datetime.now(started_at(c).tzinfo) - started_at(c))
                   .total_seconds()))
    snap = stack.collect()
    assert snap.containers[0].health == "starting"
    assert probe(snap, "qwen").outcome == "empty_reply"
    assert_findings(snap, {("health_starting_long", "qwen")})


def test_healthcheck_hits_auth(sim_container, tmp_path):
    """The reference stack's mistake: `curl -f /system_stats` gets 401 under Login."""
    a = make_hash()
    stack = Stack(tmp_path, a)
    c = start_sim(sim_container, stack, "flux", hash_=a, healthcheck=health("/system_stats"))
    wait_health(c, "unhealthy")
    snap = stack.collect()
    assert probe(snap, "flux").auth == "enforced"
    assert_findings(snap, {("healthcheck_hits_auth", "flux")})


@pytest.mark.parametrize("scenario,outcome", [
    ("no_listen", "empty_reply"),  # docker-proxy accepts, nothing inside listens
    ("empty_reply", "empty_reply"),
    ("hang", "timeout"),
])
def test_port_unreachable(sim_container, tmp_path, scenario, outcome):
    """Past the start grace (here 10 ms: tests/integration/test_causes_docker.py covers the
    `starting` a just-started container gets first)."""
    a = make_hash()
    stack = Stack(tmp_path, a)
    stack.docker = {"start_grace": 0.01}
    c = start_sim(sim_container, stack, "qwen", hash_=a, wait=False, scenario=scenario)
    wait_log(c, "Starting server" if scenario == "no_listen" else "To see the GUI go to")
    snap = stack.collect()
    assert probe(snap, "qwen").outcome == outcome
    assert_findings(snap, {("port_unreachable", "qwen")})
    f = finding(snap, "port_unreachable")
    assert f.severity is Severity.CRITICAL and f.fix == "restart"


def test_a_url_on_a_port_the_container_does_not_publish(sim_container, tmp_path):
    """The container is fine; the configured port is not its own: not "published but
    nothing listens" (a restart would change nothing), but the port is not published."""
    a = make_hash()
    stack = Stack(tmp_path, a)
    c = start_sim(sim_container, stack, "qwen", hash_=a)
    port = free_port()
    stack.services[0]["url"] = f"http://127.0.0.1:{port}"
    snap = stack.collect()
    assert probe(snap, "qwen").outcome == "refused"
    assert_findings(snap, {("port_not_published", "qwen")})
    f = finding(snap, "port_not_published")
    assert f.severity is Severity.CRITICAL and f.fix != "restart"
    assert f"{c.name} does not publish port {port}" in f.message


# ------------------------------------------------------------------ ComfyUI-Login


def test_login_not_loaded(sim_container, tmp_path):
    a = make_hash()
    stack = Stack(tmp_path, a)
    start_sim(sim_container, stack, "qwen", hash_=a, scenario="login_missing")
    snap = stack.collect()
    p = probe(snap, "qwen")
    assert (p.login_loaded, p.auth) == (False, "disabled")
    assert_findings(snap, {("login_not_loaded", "qwen")})


def test_auth_disabled_login_page_served_but_api_open(sim_container, tmp_path):
    """ComfyUI-Login is loaded (its page answers, its token line is logged) and the API
    still answers without a token, as behind a proxy that adds the Bearer header."""
    a = make_hash()
    stack = Stack(tmp_path, a)
    start_sim(sim_container, stack, "qwen", hash_=a, scenario="open_api")
    snap = stack.collect()
    p = probe(snap, "qwen")
    assert (p.login_loaded, p.auth) == (True, "disabled")
    assert_findings(snap, {("auth_disabled", "qwen")})


def test_password_missing(sim_container, tmp_path):
    a = make_hash()
    stack = Stack(tmp_path, a)
    start_sim(sim_container, stack, "qwen", hash_=a, scenario="no_password")
    snap = stack.collect()
    assert probe(snap, "qwen").auth == "no_password"
    assert_findings(snap, {("password_missing", "qwen")})


def test_token_rejected_when_the_servers_password_holds_another_hash(sim_container, tmp_path):
    """Its PASSWORD holds B, the canonical copy A: a restart would load B again, so the
    finding is token_rejected (unify), not token_stale (restart); the copies disagree too."""
    a, b = make_hash(), make_hash()
    stack = Stack(tmp_path, a)
    start_sim(sim_container, stack, "qwen", hash_=b)
    snap = stack.collect()
    assert probe(snap, "qwen").auth == "rejected"
    assert_findings(snap, {("token_rejected", "qwen"), ("token_drift", None)})
    assert finding(snap, "token_rejected").fix == "unify"
    assert "qwen-password" in finding(snap, "token_drift").message


def test_token_stale_until_restart(sim_container, tmp_path):
    a, b = make_hash(), make_hash()
    stack = Stack(tmp_path, a)
    c = start_sim(sim_container, stack, "qwen", hash_=a)
    assert_findings(stack.collect(), set())

    # rotate both copies on disk without restarting: the server keeps A
    write_secret(tmp_path / ".secrets" / "qwen-api-user.token", b + "\n")
    write_secret(tmp_path / "login" / "qwen" / "PASSWORD", f"{b}\nadmin")
    snap = stack.collect()
    assert probe(snap, "qwen").auth == "rejected"
    assert snap.tokens is not None and snap.tokens.consistent
    assert_findings(snap, {("token_stale", "qwen")})
    assert finding(snap, "token_stale").fix == "restart"

    c.restart(timeout=5)
    wait_port(int(stack.services[0]["url"].rsplit(":", 1)[1]))
    snap = stack.collect()
    assert probe(snap, "qwen").auth == "enforced"
    assert_findings(snap, set())


def test_token_drift(sim_container, tmp_path):
    a, b = make_hash(), make_hash()
    stack = Stack(tmp_path, a)
    stack.hash_file("docker-secrets", "docker-configurations/.secrets/qwen-api-user.token", b)
    start_sim(sim_container, stack, "qwen", hash_=a)
    snap = stack.collect()
    assert probe(snap, "qwen").auth == "enforced"
    assert_findings(snap, {("token_drift", None)})
    f = finding(snap, "token_drift")
    assert f.fix == "unify" and "docker-secrets" in f.message


@pytest.mark.parametrize("case", ["crlf_password", "env_key_in_value"])
def test_token_file_problem(sim_container, tmp_path, case):
    """A PASSWORD saved with CRLF (the API still works, the web login would not), or the
    old synchronizer's `KEY=KEY=<hash>` line: one finding for the file, not also drift."""
    a = make_hash()
    stack = Stack(tmp_path, a)
    if case == "crlf_password":
        start_sim(sim_container, stack, "qwen", hash_=a, password_newline="\r\n")
        expect = "crlf"
    else:
        env = write_secret(tmp_path / ".env",
                           f"TZ=Europe/Paris\nCOMFYUI_API_TOKEN=COMFYUI_API_TOKEN={a}\n")
        stack.location("env-main", env, "env", key="COMFYUI_API_TOKEN")
        start_sim(sim_container, stack, "qwen", hash_=a)
        expect = "key_in_value"
    snap = stack.collect()
    assert probe(snap, "qwen").auth == "enforced"
    assert_findings(snap, {("token_file_problem", None)})
    assert expect in finding(snap, "token_file_problem").message


# ------------------------------------------------------------------ GPU, orchestrator


def test_gpu_unavailable_is_info_only(sim_container, tmp_path):
    """No NVIDIA driver here and no ComfyUI /system_stats to stand in: an info finding."""
    from genai_tui.sources import gpu

    if gpu.collect().gpus:
        pytest.skip("NVML works on this host: the no-driver path cannot be built")
    stack = Stack(tmp_path, make_hash())
    start_sim(sim_container, stack, "sd35", kind="stub")
    snap = stack.collect()
    assert_findings(snap, set())
    f = finding(snap, "gpu_unavailable")
    assert f.severity is Severity.INFO and f.service is None
    assert snap.gpu is not None and snap.gpu.error and not snap.gpu.gpus
    assert cli.exit_status(snap, stack.config()) == cli.EXIT_OK


def test_orchestrator_backend_down(sim_container, tmp_path):
    stack = Stack(tmp_path, make_hash())
    c = start_sim(sim_container, stack, "orchestrator", kind="orchestrator",
                  extra_args=["--backends",
                              "ghost=http://127.0.0.1:9/,itself=http://127.0.0.1:8090/health",
                              "--check-interval", "0.5"])
    port = int(stack.services[0]["url"].rsplit(":", 1)[1])

    def services() -> dict[str, str]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/health")
            return json.loads(conn.getresponse().read()).get("services") or {}
        finally:
            conn.close()

    wait_for(lambda: services() == {"ghost": "unhealthy", "itself": "healthy"}, 20, 0.2)
    assert state(c)["Status"] == "running"
    snap = stack.collect()
    assert_findings(snap, {("orchestrator_backend_down", "orchestrator")})
    msg = finding(snap, "orchestrator_backend_down").message
    assert "ghost" in msg and "itself" not in msg


# ------------------------------------------------------------------ all good


def test_healthy_stack_has_no_warning_or_critical(sim_container, network, tmp_path):
    """Two ComfyUI behind Login, a stub and the orchestrator watching them; every token copy
    agrees (hash files, PASSWORDs, .env, JSON, the raw token in .env); healthchecks on
    /login and /health."""
    raw = secrets.token_urlsafe(32)
    a = real_hash(raw)
    stack = Stack(tmp_path, a)
    env = write_secret(tmp_path / ".env", "# stack secrets\n"
                       f"COMFYUI_API_TOKEN='{a}'\nCOMFYUI_RAW_TOKEN={raw}\nTZ=Europe/Paris\n")
    stack.location("env-main", env, "env", key="COMFYUI_API_TOKEN")
    stack.location("env-raw", env, "raw_env", key="COMFYUI_RAW_TOKEN")
    conf = write_secret(tmp_path / ".secrets" / "comfyui_auth_tokens.conf",
                        json.dumps({"version": "1.0", "bcrypt_hash": a}, indent=2))
    stack.location("conf", conf, "json", key="bcrypt_hash")

    made = [
        start_sim(sim_container, stack, "comfyui-qwen", hash_=a, network=network,
                  healthcheck=health("/login", interval=1)),
        start_sim(sim_container, stack, "flux-1-dev", hash_=a, network=network,
                  healthcheck=health("/login", interval=1)),
        start_sim(sim_container, stack, "stable-diffusion-35", kind="stub", network=network,
                  healthcheck=health("/health", 8000, interval=1)),
    ]
    backends = ",".join(f"{svc['name']}=http://{svc['container']}:{port}/"
                        for svc, port in zip(stack.services, (8188, 8188, 8000), strict=True))
    made.append(start_sim(sim_container, stack, "orchestrator", kind="orchestrator",
                          network=network, healthcheck=health("/health", 8090, interval=1),
                          extra_args=["--backends", backends, "--check-interval", "0.5"]))
    for c in made:
        wait_health(c, "healthy")
    orch_port = int(stack.services[-1]["url"].rsplit(":", 1)[1])

    def all_backends_healthy() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", orch_port, timeout=2)
        try:
            conn.request("GET", "/health")
            states = json.loads(conn.getresponse().read()).get("services") or {}
        finally:
            conn.close()
        return len(states) == 3 and set(states.values()) == {"healthy"}

    wait_for(all_backends_healthy, 20, 0.2)
    snap = stack.collect()
    assert_findings(snap, set())
    assert cli.exit_status(snap, stack.config()) == cli.EXIT_OK
    assert [c.health for c in snap.containers] == ["healthy"] * 4
    assert {p.service: (p.outcome, p.auth) for p in snap.probes} == {
        "comfyui-qwen": ("ok", "enforced"), "flux-1-dev": ("ok", "enforced"),
        "stable-diffusion-35": ("ok", None), "orchestrator": ("ok", None)}
    assert snap.tokens is not None and snap.tokens.consistent
    assert len(snap.tokens.fingerprints) == 2  # the hash, and the raw token it verifies
    assert all(s.uses_disk_hash for s in snap.tokens.servers)
