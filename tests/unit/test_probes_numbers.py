"""Hostile numbers in HTTP answers (issue 19, item 12): every number a probe parses is
bounded and validated; a bad field is ignored with a note in `detail` and never changes the
outcome or the auth verdict that the earlier requests proved."""

from __future__ import annotations

import json

import pytest

from genai_tui.config import ServiceConfig
from genai_tui.sources.probes import MAX_BACKENDS, parse_queue, parse_system_stats
from tests.conftest import make_hash
from tests.unit.test_probes import (
    answering,
    comfy,
    fake_comfy,
    header,
    http_answer,
    path_of,
    probe,
    serve,
)

HUGE = "9" * 401  # a 401-digit integer: float() of it raises OverflowError

#: (raw JSON text of the vram_total value, what the note says)
BAD_VRAM = [
    (HUGE, "too large"),
    ("-" + HUGE, "negative"),
    ("1e400", "not finite"),  # json.loads makes it inf
    ("-Infinity", "not finite"),
    ("NaN", "not finite"),
    ("1e300", "too large"),  # finite, but no GPU has that much memory
    ("-1", "negative"),
    ("true", "not a number"),
    ('"25769803776"', "not a number"),
    ('{"bytes": 1}', "not a number"),
    ("[1, [2, [3]]]", "not a number"),
    ("null", "not a number"),
]
BAD_VRAM_IDS = ["huge", "huge-negative", "1e400", "-inf", "nan", "1e300", "minus-one", "bool",
                "string", "object", "nested-list", "null"]


def stats_body(total: str, free: str = "1073741824", extra: str = "") -> bytes:
    return (f'{{"system": {{}}, "devices": [{{"name": "cuda:0 RTX", "vram_total": {total},'
            f' "vram_free": {free}{extra}}}]}}').encode()


@pytest.mark.parametrize(("total", "why"), BAD_VRAM, ids=BAD_VRAM_IDS)
async def test_hostile_vram_total_keeps_the_enforced_verdict_and_is_noted(total, why):
    h = make_hash()
    srv = await serve(fake_comfy(h, body_for={"/system_stats": stats_body(total)}))
    try:
        r = await probe(comfy(srv.url), h)
    finally:
        await srv.__aexit__()
    assert (r.outcome, r.auth, r.status, r.queue_remaining) == ("ok", "enforced", 200, 3)
    assert r.vram_total_mb is None
    assert r.vram_free_mb == 1024.0  # the good field next to it is still read
    assert r.device_name == "cuda:0 RTX"
    assert "auth enforced" in r.detail
    assert f"vram_total ignored ({why})" in r.detail
    assert HUGE not in r.detail and len(r.detail) <= 240
    json.dumps(r.to_json(), allow_nan=False)  # what `check --json` prints stays valid


async def test_every_bad_field_is_noted_once_and_the_result_stays_printable():
    h = make_hash()
    body = stats_body(HUGE, "NaN", f', "torch_vram_total": {HUGE}, "torch_vram_free": -5')
    srv = await serve(fake_comfy(h, body_for={
        "/system_stats": body,
        "/prompt": f'{{"exec_info": {{"queue_remaining": {HUGE}}}}}'.encode()}))
    try:
        r = await probe(comfy(srv.url), h)
    finally:
        await srv.__aexit__()
    assert (r.outcome, r.auth) == ("ok", "enforced")
    assert (r.vram_total_mb, r.vram_free_mb, r.queue_remaining) == (None, None, None)
    assert "queue_remaining ignored (too large)" in r.detail
    assert "vram_total ignored (too large)" in r.detail
    assert "vram_free ignored (not finite)" in r.detail
    assert HUGE not in r.detail
    json.dumps(r.to_json(), allow_nan=False)


async def test_free_vram_above_the_total_is_not_believed():
    h = make_hash()
    body = stats_body(str(8 << 30), str(16 << 30))
    srv = await serve(fake_comfy(h, body_for={"/system_stats": body}))
    try:
        r = await probe(comfy(srv.url), h)
    finally:
        await srv.__aexit__()
    assert (r.outcome, r.auth, r.vram_total_mb) == ("ok", "enforced", 8192.0)
    assert r.vram_free_mb is None and "vram_free ignored (above vram_total)" in r.detail


@pytest.mark.parametrize("value", [HUGE, "-3", "true", "2.5", '"7"', "1e400", "[3]"],
                         ids=["huge", "negative", "bool", "float", "string", "inf", "list"])
async def test_hostile_queue_length_on_an_open_api_keeps_the_disabled_verdict(value):
    body = f'{{"exec_info": {{"queue_remaining": {value}}}}}'.encode()

    def routes(head: bytes) -> bytes:
        path = path_of(head)
        if path == "/login":
            return http_answer(404, b"404: Not Found")
        if path == "/prompt":
            return http_answer(200, body)
        return http_answer(200, stats_body(str(24 << 30)))

    srv = await serve(answering(routes))
    try:
        r = await probe(comfy(srv.url), None)
    finally:
        await srv.__aexit__()
    assert (r.outcome, r.auth, r.queue_remaining) == ("ok", "disabled", None)
    assert r.vram_total_mb == 24576.0
    assert "queue_remaining ignored" in r.detail


def comfy_routes(hash_: str, system_stats: bytes) -> object:
    """A ComfyUI-Login lookalike whose `/system_stats` answer is given raw (head and body),
    so its `Content-Length` can be anything."""

    def routes(head: bytes) -> bytes:
        path = path_of(head)
        if path == "/login":
            return http_answer(200, b"<html>Welcome back, admin!</html>")
        if header(head, "authorization") != f"Bearer {hash_}":
            return http_answer(401, b'{"error": "Authentication required."}')
        if path == "/system_stats":
            return system_stats
        return http_answer(200, b'{"exec_info": {"queue_remaining": 3}}')

    return answering(routes)


@pytest.mark.parametrize("length", [HUGE, "-1", "abc", "1e3", "5, 6", "99999999"],
                         ids=["huge", "negative", "word", "float", "list", "unfilled"])
async def test_hostile_content_length_on_system_stats_keeps_the_verdict(length):
    """A `Content-Length` that is not a number, or one past the body cap that the body never
    fills: VRAM is not read (and the detail says so), the verdict stands."""
    h = make_hash()
    raw = (f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
           + stats_body(str(24 << 30)).decode()).encode()
    srv = await serve(comfy_routes(h, raw))
    try:
        r = await probe(comfy(srv.url), h)
    finally:
        await srv.__aexit__()
    assert (r.outcome, r.auth, r.queue_remaining) == ("ok", "enforced", 3)
    assert r.vram_total_mb is None and "not read" in r.detail
    assert HUGE not in r.detail


async def test_orchestrator_health_with_hostile_numbers_is_still_ok_and_noted():
    body = json.dumps({
        "status": 200, "healthy": True,
        "services": [{"name": 10 ** 400, "status": "healthy"}, {"name": "a", "status": 5},
                     {"name": "b", "status": "down"}, 7, [1, [2]], {"id": None}],
    }).encode()
    srv = await serve(answering(lambda head: http_answer(200, body)))
    try:
        r = await probe(ServiceConfig("orch", srv.url, "orchestrator"), None)
    finally:
        await srv.__aexit__()
    assert (r.outcome, r.status, r.health) == ("ok", 200, "healthy")
    assert r.backends["b"] == "down" and "a" not in r.backends
    assert len(r.backends) == 2  # the huge int name is shown, sanitised and capped
    assert all(len(k) <= 40 for k in r.backends)
    assert "status ignored (a number, not a state)" in r.detail
    assert "4 backend entries ignored (no readable name or state)" in r.detail
    json.dumps(r.to_json(), allow_nan=False)


async def test_too_many_backends_are_counted_not_read():
    body = json.dumps({"status": "ok",
                       "services": {f"b{i}": "healthy" for i in range(100)}}).encode()
    srv = await serve(answering(lambda head: http_answer(200, body)))
    try:
        r = await probe(ServiceConfig("orch", srv.url, "orchestrator"), None)
    finally:
        await srv.__aexit__()
    assert (r.outcome, len(r.backends)) == ("ok", MAX_BACKENDS)
    assert f"68 backends past the first {MAX_BACKENDS} not read" in r.detail


# ------------------------------------------------------------------ the parsers alone


@pytest.mark.parametrize(("total", "why"), BAD_VRAM, ids=BAD_VRAM_IDS)
def test_parse_system_stats_never_raises_and_notes_why(total, why):
    notes: list[str] = []
    stats = parse_system_stats(stats_body(total), notes)
    assert stats.vram_total_mb is None and stats.vram_free_mb == 1024.0
    assert notes == [f"vram_total ignored ({why})"]


def test_parsers_accept_plausible_numbers_silently():
    notes: list[str] = []
    stats = parse_system_stats(stats_body(str(80 << 30), str(1 << 30)), notes)
    assert (stats.vram_total_mb, stats.vram_free_mb, notes) == (81920.0, 1024.0, [])
    assert parse_queue(b'{"exec_info": {"queue_remaining": 0}}', notes) == 0
    assert parse_queue(b'{"exec_info": {"queue_remaining": 12}}', notes) == 12
    assert notes == []


def test_parse_queue_notes_a_bad_length():
    for raw, why in ((HUGE, "too large"), ("-2", "negative"), ("true", "not an integer"),
                     ("2.0", "not an integer"), ('"2"', "not an integer")):
        notes: list[str] = []
        assert parse_queue(f'{{"exec_info": {{"queue_remaining": {raw}}}}}'.encode(),
                           notes) is None
        assert notes == [f"queue_remaining ignored ({why})"], raw
