"""Host readings with the real psutil on this machine."""

from __future__ import annotations

import threading
import time
from collections import namedtuple
from pathlib import Path

import psutil
import pytest

from genai_tui.config import Config, HostConfig, load_file
from genai_tui.model import Snapshot
from genai_tui.sources import host
from genai_tui.sources.host import HostSource, cpu_pct_between, disk_usage

MIB = 1024 * 1024
Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


def test_cpu_pct_matches_psutils_definition() -> None:
    before = Times(100, 0, 50, 800, 50, 0, 0, 0, 0, 0)
    # +30 user (10 of it guest time, which Linux already counts in user), +10 system,
    # +50 idle, +10 iowait: 100 ticks passed, 40 of them busy (iowait counts as idle)
    after = Times(130, 0, 60, 850, 60, 0, 0, 0, 10, 0)
    assert cpu_pct_between(before, after) == pytest.approx(40.0)
    assert cpu_pct_between(after, after) is None  # no time passed: no number


def test_first_reading_has_no_cpu_then_a_real_one() -> None:
    src = HostSource()
    first = src.read()
    assert first.cpu_pct is None  # not psutil's meaningless first 0.0
    time.sleep(0.1)  # cpu_times() advance in clock ticks
    second = src.read()
    assert second.cpu_pct is not None and 0.0 <= second.cpu_pct <= 100.0


def test_cpu_works_across_threads() -> None:
    """Textual thread workers are new threads: psutil.cpu_percent(None) would reset."""
    src = HostSource()
    results = []
    for _ in range(2):
        t = threading.Thread(target=lambda: results.append(src.read().cpu_pct))
        t.start()
        t.join()
        time.sleep(0.1)  # cpu_times() advance in clock ticks
    assert results[0] is None
    assert results[1] is not None


def test_memory_swap_load_are_this_machines() -> None:
    info = HostSource().read()
    vm = psutil.virtual_memory()
    assert info.memory_total_mb == pytest.approx(vm.total / MIB)
    # "used" is what cannot be reclaimed: total - available
    assert info.memory_used_mb == pytest.approx((vm.total - vm.available) / MIB, rel=0.05)
    assert info.swap_total_mb == pytest.approx(psutil.swap_memory().total / MIB)
    assert info.load is not None and len(info.load) == 3
    assert info.cpu_count == psutil.cpu_count()


def test_disks_of_configured_paths_and_missing_one(tmp_path: Path) -> None:
    missing = tmp_path / "models-not-mounted"
    info = HostSource([tmp_path, missing]).read()
    ok, gone = info.disks
    real = psutil.disk_usage(str(tmp_path))
    assert ok.path == str(tmp_path) and ok.error is None
    assert ok.total_mb == pytest.approx(real.total / MIB)
    assert ok.pct is not None and 0 <= ok.pct <= 100
    assert gone.error == "not found" and gone.used_mb is None
    assert disk_usage(tmp_path / "x\x00y").error == "invalid path"  # never a traceback


def test_collect_uses_config_disks_and_a_short_interval(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    cfg = tmp_path / "genai-tui.toml"
    cfg.write_text('[host]\ndisks = ["models", "/nonexistent/outputs"]\nmemory_warn_pct = 85\n')
    config = load_file(cfg)
    info = host.collect(config, interval=0.05)
    assert [d.path for d in info.disks] == [str(tmp_path / "models"), "/nonexistent/outputs"]
    assert info.disks[1].error == "not found"
    assert info.cpu_pct is not None


def test_without_configured_disks_the_stack_folder_is_shown(tmp_path: Path) -> None:
    config = Config(services=(), host=HostConfig(), base_dir=tmp_path)
    assert host.default_disks(config) == [tmp_path]


def test_json_shape() -> None:
    info = HostSource(["/"]).read()
    doc = Snapshot(host=info).to_json()["host"]
    for key in ("cpu_pct", "memory_used_mb", "memory_total_mb", "swap_used_mb", "disks"):
        assert key in doc
    assert doc["disks"][0]["path"] == "/"
