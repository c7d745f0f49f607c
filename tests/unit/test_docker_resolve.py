"""`choose` on listings shaped like the engine's `containers(all=True)`: a
target is a full ID by exact name, else by one compose label; never an ID prefix."""

from __future__ import annotations

import secrets
from typing import Any

from genai_tui.config import ServiceConfig
from genai_tui.sources.docker import COMPOSE_ONEOFF, COMPOSE_SERVICE, choose


def item(name: str, *, label: str | None = None, oneoff: bool = False,
         cid: str | None = None) -> dict[str, Any]:
    labels = {}
    if label is not None:
        labels = {COMPOSE_SERVICE: label, COMPOSE_ONEOFF: "True" if oneoff else "False"}
    return {"Id": cid or secrets.token_hex(32), "Names": [f"/{name}"], "Labels": labels}


def svc(name: str, container: str | None = None) -> ServiceConfig:
    return ServiceConfig(name, "http://127.0.0.1:1", container=container)


def test_a_hex_name_is_never_an_id_prefix():
    victim = item("unrelated", cid="cafe" + "0" * 60)
    s = svc("db", "cafe")
    r = choose([s], s, [victim])
    assert r.cid is None and r.reason.startswith("no container 'cafe'")


def test_the_exact_name_wins_wherever_it_is_listed():
    s = svc("flux", "flux")
    exact = item("flux")
    for listing in ([item("a", label="flux"), exact], [exact, item("b", label="flux")]):
        assert choose([s], s, listing).cid == exact["Id"]


def test_one_label_match_resolves_two_are_ambiguous():
    s = svc("flux-1-dev", "flux")
    one, two = item("proj-flux-1", label="flux"), item("proj-flux-2", label="flux")
    assert choose([s], s, [one]).cid == one["Id"]
    r = choose([s], s, [one, two])
    assert r.cid is None and "ambiguous" in r.reason
    assert "proj-flux-1" in r.reason and "proj-flux-2" in r.reason


def test_label_by_service_name_and_oneoffs_ignored():
    s = svc("comfyui", "comfyui-main")
    by_name = item("proj-comfyui-1", label="comfyui")
    oneoff = item("proj-comfyui-run-1", label="comfyui", oneoff=True)
    assert choose([s], s, [oneoff, by_name]).cid == by_name["Id"]
    assert choose([s], s, [oneoff]).cid is None


def test_a_container_named_for_another_service_is_not_a_lookalike():
    flux, qwen = svc("flux", "flux"), svc("qwen", "qwen")
    other = item("qwen", label="flux")  # qwen's own container, carrying flux's label
    assert choose([flux, qwen], flux, [other]).cid is None
    assert choose([flux, qwen], qwen, [other]).cid == other["Id"]


def test_entries_without_a_full_id_are_skipped():
    s = svc("flux", "flux")
    assert choose([s], s, [item("flux", cid="abc123")]).cid is None
    assert choose([s], s, [{"Names": None, "Labels": None}]).cid is None


def test_reasons_are_one_printable_line():
    s = svc("x", "bad\x1b[2Jname")
    reason = choose([s], s, []).reason
    assert reason.isprintable() and "\x1b" not in reason
