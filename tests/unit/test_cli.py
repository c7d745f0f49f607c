"""The console entry point's basics."""

from __future__ import annotations

import subprocess
import sys

import genai_tui


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "genai_tui", *args], capture_output=True,
                          text=True, timeout=60)


def test_version():
    proc = run("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"genai-tui {genai_tui.__version__}"


def test_help_lists_the_commands_and_options():
    proc = run("--help")
    assert proc.returncode == 0
    for word in ("check", "tokens", "demo", "--config", "--readonly"):
        assert word in proc.stdout
    sub = run("check", "--help")
    assert sub.returncode == 0 and "--json" in sub.stdout
