"""Shared fixtures: a real Docker engine (skipped with a reason when absent, failed when
GENAI_TUI_REQUIRE_DOCKER=1), simulator containers that are always removed, and helpers."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from genai_tui import secret as _secret

REQUIRE_DOCKER = os.environ.get("GENAI_TUI_REQUIRE_DOCKER") == "1"
TEST_FINGERPRINT_KEY = b"genai-tui test fingerprint key"


@pytest.fixture(autouse=True)
def _private_state_home(tmp_path_factory, monkeypatch) -> None:
    """Saved logs and the history database go under $XDG_STATE_HOME: a folder of the
    test's own, never the real home (subprocesses inherit it)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state-home")))


@pytest.fixture(autouse=True)
def _fingerprint_key() -> None:
    """One fingerprint key for each test, so snapshots are stable even after a test ran
    the CLI in-process (a real install keeps its own random key in its state folder)."""
    _secret.set_key(TEST_FINGERPRINT_KEY)
TEST_OWNER = f"pytest-{os.getpid()}-{secrets.token_hex(2)}"


def _docker_client():
    import docker

    try:
        client = docker.from_env(timeout=30)
        client.ping()
        return client, None
    except Exception as exc:  # any failure means "no engine here"
        return None, f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def docker_client():
    client, reason = _docker_client()
    if client is None:
        msg = f"no Docker engine reachable ({reason})"
        if REQUIRE_DOCKER:
            pytest.fail(msg + " and GENAI_TUI_REQUIRE_DOCKER=1")
        pytest.skip(msg)
    from genai_tui import simdocker

    simdocker.ensure_image(client)
    yield client
    simdocker.remove_owned(client, TEST_OWNER)
    client.close()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "docker_client" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


def make_hash(seed: str | None = None) -> str:
    """A well-formed bcrypt-shaped hash (53 chars after the cost) for tests that don't
    need bcrypt to verify it."""
    alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    rnd = secrets.SystemRandom() if seed is None else __import__("random").Random(seed)
    return "$2b$12$" + "".join(rnd.choice(alphabet) for _ in range(53))


@pytest.fixture
def login_dir(tmp_path: Path) -> Callable[..., Path]:
    """Write a ComfyUI-Login PASSWORD file (hash line + user line) in a fresh folder."""

    def make(hash_: str | None, user: str = "admin") -> Path:
        d = tmp_path / f"login-{secrets.token_hex(3)}"
        d.mkdir()
        d.chmod(0o777)
        if hash_ is not None:
            (d / "PASSWORD").write_text(f"{hash_}\n{user}")
        return d

    return make


@pytest.fixture
def sim_container(docker_client) -> Iterator[Callable[..., object]]:
    """Start simulator containers (see genai_tui.simdocker.run_sim); all are removed after
    the test, even when it fails."""
    from genai_tui import simdocker

    made = []

    def start(name: str | None = None, **kwargs):
        kwargs.setdefault("owner", TEST_OWNER)
        c = simdocker.run_sim(docker_client, name=name or simdocker.unique("gtt"), **kwargs)
        made.append(c)
        c.reload()
        return c

    yield start
    for c in made:
        try:
            c.remove(force=True)
        except Exception:
            pass


def host_port(container, container_port: int = 8188) -> int:
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"][f"{container_port}/tcp"]
    return int(bindings[0]["HostPort"])


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 20.0) -> None:
    """Wait until something answers HTTP on the port (for published Docker ports, a TCP
    accept alone proves nothing: docker-proxy accepts before the app listens)."""
    import http.client

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("GET", "/login")
            conn.getresponse().read()
            conn.close()
            return
        except (OSError, http.client.HTTPException) as exc:
            last = exc
            time.sleep(0.1)
    raise TimeoutError(f"nothing answered on {host}:{port} within {timeout}s ({last})")


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
