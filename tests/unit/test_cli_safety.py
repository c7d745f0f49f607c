"""What the CLI prints is as safe as what the dashboard draws: a name or message from the
config, Docker or an HTTP answer never brings an escape sequence, C1 control or bidi
override to the terminal or the cron mail."""

from __future__ import annotations

import json
import subprocess
import sys

from genai_tui.safety import is_clean

HOSTILE = "evil\x1b]0;pwned\x07\x9b2J\u202erev\u200b"


def test_check_and_tokens_status_print_hostile_names_cleaned(tmp_path):
    cfg = tmp_path / "genai-tui.toml"
    cfg.write_text(
        "[[services]]\n"
        f"name = {json.dumps(HOSTILE)}\n"
        'url = "http://127.0.0.1:9"\nkind = "http"\nruntime = "process"\n'
        'process_pattern = "no-such-process-genai-tui"\n'
        "[tokens]\n[[tokens.locations]]\n"
        f"name = {json.dumps('loc' + HOSTILE)}\n"
        'path = "missing.token"\nformat = "hash_file"\n')
    for args in (["check"], ["tokens", "status", "--no-server"]):
        proc = subprocess.run([sys.executable, "-m", "genai_tui.cli", "--config", str(cfg),
                               *args], capture_output=True, text=True, timeout=60)
        out = proc.stdout + proc.stderr
        assert "Traceback" not in out
        assert "evil" in out  # the row is there, cleaned
        assert is_clean(out.replace("\n", " ")), repr(out)
        assert "]0;pwned" not in out  # no residue of the sequence either
