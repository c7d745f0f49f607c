"""No hash, raw token or 8-character piece of either may appear in anything genai-tui
prints, logs, audits, raises or draws — through status, unify, rotate, failures, the panel
and the unify modal."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess

import pytest

from genai_tui import cli
from genai_tui.config import Config, ServiceConfig
from genai_tui.sources import envfile
from genai_tui.sources import tokens as tk
from tests.tokens_helpers import leaks, make_stack, new_pair, write_config


def current_secrets(st) -> list[str]:
    """Every secret value on disk now (rotation makes new ones)."""
    out = []
    for loc in st.locations:
        if not loc.path.is_file():
            continue
        text = loc.path.read_text(errors="replace")
        if loc.format in ("env", "raw_env"):
            out += [e.value for e in envfile.find(text, loc.key) if len(e.value) >= 8]
        elif loc.format == "json":
            out += [v for v in _strings(json.loads(text)) if len(v) >= 20]
        else:
            out += [ln.strip() for ln in text.splitlines()[:1] if ln.strip()]
    return out


def _strings(doc):
    if isinstance(doc, dict):
        for v in doc.values():
            yield from _strings(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _strings(v)
    elif isinstance(doc, str):
        yield doc


async def test_nothing_secret_escapes(tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    st = make_stack(tmp_path)
    raw_b, hash_b = new_pair()
    seen: set[str] = {st.raw, st.hash, raw_b, hash_b}
    st.path("password").write_text(f"{hash_b}\r\nadmin")  # drift + CRLF
    env = st.path("env-main")  # the KEY=KEY= corruption, unquoted `$`
    env.write_bytes(env.read_bytes().replace(
        f"COMFYUI_API_TOKEN='{st.hash}'".encode(),
        f"COMFYUI_API_TOKEN=COMFYUI_API_TOKEN={hash_b}".encode()))
    cfg_path = write_config(st)
    collected: list[str] = []

    async def cli_run(*args: str) -> int:
        # in a thread: the CLI runs its own event loop for the probes
        code = await asyncio.to_thread(cli.main, ["--config", str(cfg_path), *args])
        out, err = capsys.readouterr()
        collected.extend([out, err])
        return code

    # status (text and JSON), plans, dry runs, refusals
    assert await cli_run("tokens", "status") == 1
    assert await cli_run("tokens", "status", "--json") == 1
    assert await cli_run("tokens", "unify", "--dry-run") == 1
    assert await cli_run("tokens", "unify", "--dry-run", "--json", "--from", "password") == 1
    assert await cli_run("tokens", "unify") == 2  # no terminal, no --yes
    assert await cli_run("tokens", "unify", "--from", "nope") == 3

    # exceptions: a bad source, a changed file, a failed write with rollback
    for call in (lambda: tk.plan_unify(st.tokens, "env-main"),
                 lambda: tk.plan_unify(st.tokens, "nope")):
        try:
            call()
        except tk.UnifyError as exc:
            collected += [str(exc), repr(exc)]
    plan = tk.plan_unify(st.tokens)
    collected += [repr(plan), json.dumps(plan.to_json()), repr(plan.changes),
                  repr(plan._writes)]
    if shutil.which("chattr"):
        conf = st.path("conf")
        conf.write_text(conf.read_text().replace(st.hash, hash_b))
        plan = tk.plan_unify(st.tokens)
        subprocess.run(["chattr", "+i", str(conf)], check=False)
        try:
            with pytest.raises(tk.UnifyError) as err:
                tk.apply_plan(st.tokens, plan)
            collected += [str(err.value), repr(err.value)]
        finally:
            subprocess.run(["chattr", "-i", str(conf)], check=False)

    # unify, then rotate (new secrets appear on disk: they must not appear either)
    assert await cli_run("tokens", "unify", "--yes") == 0
    assert await cli_run("tokens", "unify", "--yes", "--json") == 0
    assert await cli_run("tokens", "unify", "--rotate", "--yes") == 0
    seen.update(current_secrets(st))
    assert await cli_run("tokens", "unify", "--rotate", "--yes", "--json") == 0
    seen.update(current_secrets(st))
    assert await cli_run("tokens", "status", "--json") == 0

    # the panel and the modal, through a full unify of a fresh drift
    from genai_tui.ui.screens.unify import UnifyScreen
    from genai_tui.ui.tokens import TokensPanel
    from tests.ui.helpers import screen_text
    from tests.ui.test_tokens_panel import TokensApp, wait_until

    raw_c, hash_c = new_pair()
    seen.update({raw_c, hash_c})
    st.path("password").write_text(f"{hash_c}\nadmin")
    config = Config(services=(ServiceConfig("qwen", "http://127.0.0.1:9", "comfyui"),),
                    tokens=st.tokens, base_dir=st.root)
    app = TokensApp(config)
    async with app.run_test(size=(100, 32)) as pilot:
        panel = app.query_one(TokensPanel)
        await wait_until(pilot, lambda: panel.report is not None)
        collected.append(screen_text(app))
        await pilot.press("u")
        await wait_until(pilot, lambda: isinstance(app.screen, UnifyScreen)
                         and app.screen.step == "choose")
        collected.append(screen_text(app))
        await pilot.press("up", "enter")  # the rotate choice (last in the list)
        screen = app.screen
        await wait_until(pilot, lambda: screen.step in ("plan", "error"))
        collected.append(screen_text(app))
        await pilot.press("a")
        await wait_until(pilot, lambda: screen.step in ("done", "error"))
        collected.append(screen_text(app))
        assert screen.step == "done" and screen.plan is not None and screen.plan.rotate
        collected += [repr(screen.plan), repr(screen.result)]
        seen.update(current_secrets(st))
        await pilot.press("c")
        await wait_until(pilot, lambda: panel.report is not None and panel.report.consistent)
        collected.append(screen_text(app))
        collected += [n.message for n in app._notifications]

    # everything written besides the token files themselves
    collected.append(st.tokens.audit_log.read_text())
    collected += [r.getMessage() for r in caplog.records]
    collected.append(json.dumps(tk.read_report(st.tokens).to_json()))

    everything = "\n".join(collected)
    assert len(seen) >= 8  # the scan covers the original, drifted and rotated values
    assert "fp:" in everything  # ...and fingerprints were shown instead
    assert not leaks(everything, sorted(seen))
