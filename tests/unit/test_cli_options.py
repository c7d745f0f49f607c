"""The global options (`--config`, `--readonly`) work before or after the subcommand, and a
usage error of `check` exits 3 (UNKNOWN), never 2 (which a monitoring system reads as
CRITICAL). Run through the real entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from genai_tui import cli
from tests.tokens_helpers import make_stack, new_pair, write_config

ROOT = Path(__file__).resolve().parents[2]

CHECK_CONFIG = (
    "[[services]]\n"
    'name = "svc"\nurl = "http://127.0.0.1:9"\nkind = "http"\nruntime = "process"\n'
    'process_pattern = "no-such-process-genai-tui"\n'
)


def cli_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m genai_tui.cli ARGS` in `cwd`, with no config from the environment."""
    env = {k: v for k, v in os.environ.items() if k != "GENAI_TUI_CONFIG"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["HOME"] = str(cwd)  # no ~/.config/genai-tui/config.toml of the user's
    env["XDG_CONFIG_HOME"] = str(cwd / ".config")
    return subprocess.run([sys.executable, "-m", "genai_tui.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture
def two_configs(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(CHECK_CONFIG)
    b.write_text(CHECK_CONFIG)
    return work, a, b


def header(proc: subprocess.CompletedProcess[str]) -> str:
    """The line naming the config (the second: the first is the plugin status line)."""
    lines = proc.stdout.splitlines()
    return lines[1] if len(lines) > 1 else ""


@pytest.mark.parametrize("order", ["before", "after", "equals-after"])
def test_check_uses_the_config_given_before_or_after(two_configs, order):
    work, a, _ = two_configs
    args = {"before": ["--config", str(a), "check"],
            "after": ["check", "--config", str(a)],
            "equals-after": ["check", f"--config={a}"]}[order]
    proc = cli_run(*args, cwd=work)
    assert "usage:" not in proc.stderr, proc.stderr
    assert header(proc) == f"genai-tui check — {a}"
    assert proc.stdout.startswith("GENAI-TUI CRITICAL - 0/1 running")
    assert "status: CRITICAL" in proc.stdout and proc.returncode == 2  # the missing process


def test_check_after_the_subcommand_wins_when_both_are_given(two_configs):
    work, a, b = two_configs
    proc = cli_run("--config", str(a), "check", "--config", str(b), "--json", cwd=work)
    assert "usage:" not in proc.stderr, proc.stderr
    assert f'"config": "{b}"' in proc.stdout


def test_check_json_after_config_after(two_configs):
    work, a, _ = two_configs
    proc = cli_run("check", "--json", "--config", str(a), cwd=work)
    assert proc.returncode == 2, proc.stderr
    assert f'"config": "{a}"' in proc.stdout


@pytest.mark.parametrize("args", [
    ["check", "--bogus"],
    ["check", "extra-argument"],
    ["check", "--config"],  # option without its value
    ["--bogus", "check"],
    ["--config", "/nonexistent.toml", "check", "--jason"],
])
def test_a_usage_error_of_check_is_unknown_not_critical(tmp_path, args):
    proc = cli_run(*args, cwd=tmp_path)
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    assert "usage:" in proc.stderr and "error:" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("args", [["tokens", "--bogus"], ["demo", "--bogus"], ["--bogus"],
                                  ["dashboard", "extra"], ["nosuchcommand"]])
def test_other_usage_errors_keep_argparse_status_2(tmp_path, args):
    proc = cli_run(*args, cwd=tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "usage:" in proc.stderr


def test_check_help_still_exits_0(tmp_path):
    proc = cli_run("check", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "--config" in proc.stdout and "--json" in proc.stdout


# ------------------------------------------------------------------ tokens


def run(capsys, *args):
    try:
        code = cli.main(list(args))
    except SystemExit as exc:  # a usage error
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def stack(tmp_path, monkeypatch):
    monkeypatch.delenv("GENAI_TUI_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    st = make_stack(tmp_path / "stack")
    return st, write_config(st)


def drift(st):
    _, other = new_pair()
    st.path("password").write_text(f"{other}\nadmin")


@pytest.mark.parametrize("args", [
    ["tokens", "status", "--config", "{cfg}", "--no-server"],
    ["tokens", "--config", "{cfg}", "status", "--no-server"],
    ["--config", "{cfg}", "tokens", "status", "--no-server"],
    ["--config", "/nonexistent.toml", "tokens", "status", "--config", "{cfg}", "--no-server"],
])
def test_tokens_status_config_anywhere(stack, capsys, args):
    st, cfg = stack
    code, out, err = run(capsys, *[a.format(cfg=cfg) for a in args])
    assert code == 0, err
    assert "consistent: yes" in out


def test_tokens_unify_dry_run_with_config_after(stack, capsys):
    st, cfg = stack
    drift(st)
    before = st.snapshot()
    code, out, err = run(capsys, "tokens", "unify", "--config", str(cfg), "--dry-run")
    assert code == 1, err
    assert "dry run: nothing written" in out and "password" in out
    assert st.snapshot() == before


@pytest.mark.parametrize("args", [
    ["--readonly", "tokens", "unify", "--config", "{cfg}", "--yes"],
    ["tokens", "unify", "--readonly", "--config", "{cfg}", "--yes"],
    ["--config", "{cfg}", "tokens", "--readonly", "unify", "--yes"],
    ["--readonly", "--config", "{cfg}", "tokens", "unify", "--readonly", "--yes"],
])
def test_readonly_before_or_after_refuses_unify(stack, capsys, args):
    st, cfg = stack
    drift(st)
    before = st.snapshot()
    code, _, err = run(capsys, *[a.format(cfg=cfg) for a in args])
    assert code == 2 and "read-only" in err
    assert st.snapshot() == before


# ------------------------------------------------------------------ parsing only


@pytest.mark.parametrize("argv, readonly, config", [
    (["demo", "--readonly"], True, None),
    (["--readonly", "demo"], True, None),
    (["demo"], False, None),
    (["demo", "--config", "x.toml", "--readonly", "--dir", "d"], True, "x.toml"),
    (["dashboard", "--readonly", "--config", "x.toml"], True, "x.toml"),
    (["--config", "x.toml", "dashboard"], False, "x.toml"),
    (["--config", "x.toml", "--readonly"], True, "x.toml"),
    (["--config", "x.toml", "dashboard", "--config", "y.toml"], False, "y.toml"),
    (["--readonly", "check", "--config", "x.toml"], True, "x.toml"),
])
def test_global_options_parse_in_any_position(argv, readonly, config):
    args = cli.build_parser().parse_args(argv)
    assert args.readonly is readonly
    assert args.config == config


def test_demo_readonly_reaches_the_demo(monkeypatch):
    seen = {}

    def fake_run_demo(args):
        seen["readonly"] = args.readonly
        return 0

    monkeypatch.setattr(cli, "run_demo", fake_run_demo)
    assert cli.main(["demo", "--readonly"]) == 0
    assert seen == {"readonly": True}
