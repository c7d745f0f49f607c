"""The stream's codec: what one host sends is what the fleet view draws, and a hostile
line is one clean sentence, never a traceback or a half-applied frame."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from genai_tui import config as configmod
from genai_tui.engine import wire
from genai_tui.model import (
    ContainerInfo,
    Finding,
    GpuInfo,
    GpuProcess,
    GpuReport,
    HostInfo,
    JobInfo,
    JobsReport,
    PortBinding,
    ServiceJobs,
    Severity,
    Snapshot,
    TokenLocationStatus,
    TokensReport,
)

AT = datetime(2026, 12, 2, 10, 30, tzinfo=UTC)


def full_snapshot() -> Snapshot:
    return Snapshot(
        containers=[ContainerInfo("comfyui-qwen", "comfyui-qwen", id="ab" * 32,
                                  state="running", health="healthy", started_at=AT,
                                  ports=[PortBinding(8188, "tcp", "127.0.0.1", 18300)],
                                  lookalikes=("staging/comfyui-qwen",))],
        tokens=TokensReport(locations=[TokenLocationStatus("secrets", "/s/t", "hash_file",
                                                           state="ok", fingerprint="fp:1a2b",
                                                           mtime=AT, problems=["crlf"])],
                            fingerprints={"fp:1a2b": ["secrets"]}),
        gpu=GpuReport(gpus=[GpuInfo(0, "H200", memory_used_mb=1024.0,
                                    memory_total_mb=143_000.0,
                                    processes=[GpuProcess(42, 900.0, service="comfyui-qwen")])]),
        host=HostInfo(cpu_pct=3.5, load=(0.1, 0.2, 0.3)),
        findings=[Finding("token_drift", Severity.WARNING, "comfyui-qwen", "2 values",
                          fix="unify", since=AT, paths=("/a", "/b"))],
        jobs=JobsReport([ServiceJobs("comfyui-qwen", running=JobInfo("p1", state="running",
                                                                     step=3, steps=20),
                                     pending=[JobInfo("p2")], queue_depth_history=[1, 2])]),
        taken_at=AT)


def test_every_part_reads_back_as_it_was_sent():
    snap = full_snapshot()
    line = wire.dumps({"type": "full", "parts": {
        p: wire.encode(getattr(snap, p)) for p in wire.STREAM_PARTS}})
    assert "\n" not in line
    parts = wire.decode_parts(wire.loads(line))
    for part in wire.STREAM_PARTS:
        assert parts[part] == getattr(snap, part), part
    assert parts["findings"][0].severity is Severity.WARNING
    assert parts["host"].load == (0.1, 0.2, 0.3)


@pytest.mark.parametrize("line, words", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "not a frame"),
    (b'{"type": "full"}', "without parts"),
    (b'{"type": "full", "parts": {"containers": {"a": 1}}}', "expected a list"),
    (b'{"type": "full", "parts": {"containers": [{"service": 1, "container": "x"}]}}',
     "containers[0].service: expected str"),
    (b'{"type": "full", "parts": {"containers": [{"container": "x"}]}}', "service missing"),
    (b'{"type": "full", "parts": {"findings": [{"code": "x", "severity": "doom", '
     b'"service": null, "message": ""}]}}', "unknown value"),
    (b'{"type": "full", "parts": {"host": {"load": [1, 2]}}}', "expected 3 items"),
    (b'{"type": "full", "parts": {"containers": [{"service": "a", "container": "b", '
     b'"started_at": "yesterday"}]}}', "not a date"),
    (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
])
def test_a_hostile_line_is_one_clean_sentence(line, words):
    with pytest.raises(wire.WireError) as err:
        wire.decode_parts(wire.loads(line))
    assert words in str(err.value)
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)


def test_sizes_are_bounded():
    with pytest.raises(wire.WireError, match="longer than"):
        wire.loads(b"x" * (wire.MAX_LINE + 1))
    many = json.dumps({"type": "full", "parts": {"probes": [{}] * (wire.MAX_ITEMS + 1)}})
    with pytest.raises(wire.WireError, match="more than"):
        wire.decode_parts(wire.loads(many))
    text = json.dumps({"type": "full", "parts": {"docker": {"error": "x" * (wire.MAX_TEXT + 1)}}})
    with pytest.raises(wire.WireError, match="text longer"):
        wire.decode_parts(wire.loads(text))


def test_a_newer_host_may_send_more():
    line = json.dumps({"type": "delta", "new": 1, "parts": {
        "docker": {"reachable": True, "shiny": [1]}, "future_part": {"x": 1}}})
    assert wire.decode_parts(wire.loads(line)) == {"docker": Snapshot().docker}


def test_the_public_config_holds_no_alert_hook_nor_restart_command(tmp_path):
    path = tmp_path / "genai-tui.toml"
    path.write_text('''
[[services]]
name = "worker"
url = "http://127.0.0.1:9"
kind = "http"
runtime = "process"
process_pattern = "worker"
restart_command = "systemctl restart worker --password hunter2"

[[alerts]]
name = "pager"
webhook = "https://hooks.example/T0KEN-abcdef"
''')
    cfg = configmod.load(path)
    doc = json.dumps(wire.public_config(cfg))
    assert "hunter2" not in doc and "T0KEN" not in doc and "hooks.example" not in doc
    back = wire.config_from_public(json.loads(doc), configmod.load(None))
    assert [s.name for s in back.services] == ["worker"]
    assert back.services[0].restart_command is None
    assert back.alerts == () and not back.history.enabled
