"""Fixtures shared by the real-Docker tests."""

from __future__ import annotations

import pytest

from genai_tui.config import Config
from genai_tui.sources.docker import ContainerMonitor
from tests.integration.fleet_infra import (  # noqa: F401 - fixtures of the fleet tests
    make_ssh_server,
    remote_stack,
    second_engine,
    ssh_server,
)
from tests.integration.test_docker_source import Recorder


@pytest.fixture
def monitor_for():
    made: list[ContainerMonitor] = []

    def make(cfg: Config) -> tuple[ContainerMonitor, Recorder]:
        rec = Recorder()
        m = ContainerMonitor(cfg, rec)
        m.start()
        made.append(m)
        return m, rec

    yield make
    for m in made:
        m.close()
