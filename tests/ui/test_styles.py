"""Where the dashboard's look comes from: every rule is in styles/*.tcss and the app loads
all of them, so a panel's state rule (the red border of `GpuPanel.-warn`, `HostPanel.-warn`)
is no longer lost under app.tcss's generic panel border, as it was while the panel had it
in its DEFAULT_CSS only (app CSS always beats DEFAULT_CSS, whatever the specificity)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

from textual.color import Color
from textual.dom import DOMNode

import genai_tui.ui
from genai_tui.model import DiskUsage, GpuInfo, GpuProcess, GpuReport, HostInfo
from genai_tui.ui.app import GenaiTui
from genai_tui.ui.gpu import GpuPanel
from genai_tui.ui.host import DISK_WARN_PCT, HostPanel
from genai_tui.ui.probes import ProbesPanel
from tests.ui.helpers import until_derived
from tests.ui.test_dashboard import deliver, settle, snapshot_app

#: one GPU nearly full (97 %: above the default [gpu] memory_warn_pct of 90)
HOT_GPU = GpuReport(gpus=[
    GpuInfo(0, "NVIDIA GeForce RTX 4090", memory_used_mb=23_800, memory_total_mb=24_564,
            utilization_pct=99, temperature_c=83, power_w=430, power_limit_w=450,
            processes=[GpuProcess(4242, 23_000, "python3", container="flux-1-dev",
                                  service="flux-1-dev")]),
], driver_version="581.29")
#: a host short of memory (96 %: above [host] memory_warn_pct) with its models disk full
TIGHT_HOST = HostInfo(cpu_pct=88.0, load=(14.2, 12.0, 9.5), cpu_count=16,
                      memory_used_mb=61_500, memory_total_mb=64_000,
                      swap_used_mb=6_000, swap_total_mb=8_192,
                      disks=[DiskUsage("/srv/genai/models", used_mb=1_850_000,
                                       total_mb=1_887_437),
                             DiskUsage("/srv/genai/outputs", used_mb=400_000,
                                       total_mb=1_887_437)])


async def hot_day(pilot) -> None:
    """The reference stack's bad day, with the GPU and the host above their thresholds."""
    app = pilot.app
    await settle(pilot)
    assert HOT_GPU.gpus[0].memory_pct > app.config.gpu.memory_warn_pct
    assert TIGHT_HOST.memory_pct > app.config.host.memory_warn_pct
    assert TIGHT_HOST.disks[0].pct > DISK_WARN_PCT
    before = app.stack.diagnosed
    deliver(app, "gpu", HOT_GPU)
    deliver(app, "host", TIGHT_HOST)
    await until_derived(pilot, before)
    assert all(app.query_one(panel).has_class("-warn") for panel in (GpuPanel, HostPanel))


def test_snapshot_warn_borders_120x40(snap_compare):
    """The GPU and host panels framed in red ($error) in the full app."""
    assert snap_compare(snapshot_app(), terminal_size=(120, 40), run_before=hot_day)


async def test_warn_border_takes_the_error_colour():
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await hot_day(pilot)
        error = Color.parse(app.get_css_variables()["error"])
        gpu, host = app.query_one(GpuPanel), app.query_one(HostPanel)
        assert gpu.has_class("-warn") and host.has_class("-warn")
        for panel in (gpu, host):
            for edge in ("border_top", "border_right", "border_bottom", "border_left"):
                kind, colour = getattr(panel.styles, edge)
                assert (kind, colour) == ("round", error), (panel.id, edge, kind, colour)
        # the highlighted lines inside take the error colour too
        assert host.query_one("#host-mem").styles.color.rgb == error.rgb
        assert host.query(".host-disk.-warn")
        # and a panel without a warning keeps the generic border
        assert app.query_one(ProbesPanel).styles.border_top[1].rgb != error.rgb
        # back under the thresholds: back to the generic border
        calm = HostInfo(cpu_pct=10.0, load=(0.1, 0.1, 0.1), cpu_count=16,
                        memory_used_mb=8_000, memory_total_mb=64_000)
        deliver(app, "host", calm)
        await pilot.pause(0.2)
        assert not host.has_class("-warn")
        assert host.styles.border_top[1].rgb != error.rgb


def _widget_classes() -> list[type[DOMNode]]:
    classes = []
    for info in pkgutil.walk_packages(genai_tui.ui.__path__, "genai_tui.ui."):
        module = importlib.import_module(info.name)
        for _name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and issubclass(cls, DOMNode):
                classes.append(cls)
    return classes


def test_every_rule_is_in_a_stylesheet_the_app_loads():
    """No CSS written in Python: a widget's DEFAULT_CSS, if it has one, is the text of one
    of the app's stylesheets (a panel mounted alone looks as in the app), and the app
    loads app.tcss last (its layout wins ties, a panel's state rule wins by specificity)."""
    sheets = [Path(p) for p in GenaiTui.CSS_PATH]
    assert sheets[-1].name == "app.tcss"
    assert all(p.is_file() for p in sheets), sheets
    assert len({p.parent for p in sheets}) == 1
    texts = {p.read_text(encoding="utf-8"): p.name for p in sheets}
    found = {}
    for cls in _widget_classes():
        css = cls.__dict__.get("DEFAULT_CSS")
        if css:
            assert css in texts, f"{cls.__qualname__} has CSS of its own: move it to styles/"
            found[cls.__name__] = texts[css]
    assert found.get("GpuPanel") == "gpu.tcss" and found.get("HostPanel") == "host.tcss"
    # every stylesheet in the folder is loaded by the app (or by the fleet screen's)
    from genai_tui.ui.fleet import FleetApp

    loaded = {p.name for p in sheets} | {Path(p).name for p in FleetApp.CSS_PATH}
    assert {p.name for p in sheets[0].parent.glob("*.tcss")} == loaded
