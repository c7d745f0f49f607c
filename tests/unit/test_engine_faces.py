"""The faces agree because they share the engine: one finding per cause, the same exit
status in `check` and `tokens status`, and one restart policy after unify."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from genai_tui import cli
from genai_tui.config import ServiceConfig
from genai_tui.engine import actions, derive
from genai_tui.engine.collect import collect_once, collect_tokens
from genai_tui.engine.live import Stack
from genai_tui.model import ProbeResult
from genai_tui.sources import tokens as tk
from tests.tokens_helpers import load, make_stack, new_pair, write_config


def run_json(capsys, *args: str) -> tuple[int, dict]:
    code = cli.main(list(args))
    out, _ = capsys.readouterr()
    return code, json.loads(out)


def token_codes(findings: list[dict]) -> list[tuple[str, str]]:
    return sorted((f["code"], f["severity"]) for f in findings
                  if f["code"] in derive.TOKEN_CODES)


@pytest.mark.parametrize("gone, severity, code", [
    (["password"], "warning", 1),
    (["secrets", "password", "conf"], "critical", 2),  # .env keys are "missing" too below
])
def test_a_missing_copy_is_one_finding_with_the_same_status_everywhere(
        tmp_path, capsys, gone, severity, code):
    st = make_stack(tmp_path)
    cfg = write_config(st)
    for name in gone:
        st.path(name).unlink()
    if len(gone) > 1:
        st.path("env-main").write_text("UNRELATED=1\n")  # no copy of the hash is left
    s_code, s_doc = run_json(capsys, "--config", str(cfg), "tokens", "status", "--json",
                             "--no-server")
    _, c_doc = run_json(capsys, "--config", str(cfg), "check", "--json")
    assert ("token_file_missing", severity) in token_codes(s_doc["findings"])
    assert token_codes(s_doc["findings"]) == token_codes(c_doc["findings"])
    assert s_code == code
    # the dashboard's engine (a live Stack) names the same finding
    live = Stack(load(cfg), parts={"tokens", "probes"})
    live.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and token_codes(
                [f.to_json() for f in live.snapshot.findings]) != token_codes(s_doc["findings"]):
            time.sleep(0.05)
        assert token_codes([f.to_json() for f in live.snapshot.findings]) == \
            token_codes(s_doc["findings"])
    finally:
        live.close()
    missing = next(f for f in s_doc["findings"] if f["code"] == "token_file_missing")
    for name in gone:
        assert name in missing["message"]
    if severity == "critical":
        assert "nothing to copy from" in missing["message"]
        with pytest.raises(tk.UnifyError, match="nothing to copy from"):
            tk.plan_unify(load(cfg).tokens)


def test_collect_tokens_gives_the_findings_check_gives(tmp_path):
    st = make_stack(tmp_path)
    _, other = new_pair()
    st.path("password").write_text(f"{other}\nadmin")
    cfg = load(write_config(st))
    snap = collect_tokens(cfg, servers=False)
    assert "token_drift" in [f.code for f in snap.findings]
    whole = collect_once(cfg)
    assert [f for f in whole.findings if f.code in derive.TOKEN_CODES] == snap.findings


# ---------------------------------------------------------------- restart policy


def probe(service: str, auth: str | None, outcome: str = "ok") -> ProbeResult:
    return ProbeResult(service, "http://127.0.0.1:9", outcome, auth=auth)


@pytest.fixture
def two_servers(tmp_path):
    st = make_stack(tmp_path)
    st.restart_after_unify = ("qwen", "flux")
    services = ('[[services]]\nname = "qwen"\nurl = "http://127.0.0.1:9"\nkind = "comfyui"\n'
                'auth = true\n[[services]]\nname = "flux"\nurl = "http://127.0.0.1:9"\n'
                'kind = "comfyui"\nauth = true\n')
    return st, load(write_config(st, services=services))


def plan_changing(st, config, location: str) -> tk.UnifyPlan:
    """A real plan whose only value change is at `location`."""
    _, other = new_pair()
    p = st.path(location)
    if location == "password":
        p.write_text(f"{other}\nadmin")
    else:
        p.write_text(p.read_text().replace(st.hash, other))
    plan = tk.plan_unify(config.tokens)
    assert [c.location for c in plan.value_changes] == [location]
    return plan


def test_only_servers_not_using_the_new_hash_are_restarted(two_servers):
    st, config = two_servers
    plan = plan_changing(st, config, "conf")  # PASSWORD did not change
    needs = actions.needs_restart(config, plan, [probe("qwen", "enforced"),
                                                 probe("flux", "rejected")])
    assert [n.service for n in needs] == ["flux"]
    assert "another hash" in needs[0].why


def test_an_unreachable_server_restarts_only_when_its_password_changed(two_servers):
    st, config = two_servers
    down = [probe("qwen", None, "refused"), probe("flux", None, "timeout")]
    assert actions.needs_restart(config, plan_changing(st, config, "conf"), down) == []
    st2 = make_stack(st.root / "again")
    config2 = replace(config, tokens=replace(st2.tokens, restart_after_unify=("qwen", "flux")))
    needs = actions.needs_restart(config2, plan_changing(st2, config2, "password"), down)
    assert [n.service for n in needs] == ["qwen", "flux"]
    assert "PASSWORD changed" in needs[0].why


def test_compose_hint_only_when_a_compose_env_file_changed(two_servers):
    st, config = two_servers
    assert not actions.compose_env_changed(config, plan_changing(st, config, "conf"))
    st2 = make_stack(st.root / "env")
    config2 = replace(config, tokens=st2.tokens)
    assert actions.compose_env_changed(config2, plan_changing(st2, config2, "env-main"))


def test_a_non_comfyui_service_restarts_only_on_a_value_change(tmp_path):
    st = make_stack(tmp_path)
    config = load(write_config(st))
    orch = ServiceConfig("orch", "http://127.0.0.1:9", "orchestrator")
    config = replace(config, services=(orch,),
                     tokens=replace(config.tokens, restart_after_unify=("orch",)))
    assert actions.needs_restart(config, tk.plan_unify(config.tokens), []) == []
    needs = actions.needs_restart(config, plan_changing(st, config, "conf"), [])
    assert [n.service for n in needs] == ["orch"]
