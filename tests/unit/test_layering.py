"""The data layer never imports the UI toolkit: sources, model and diagnose stay usable
headless (for `check` in cron) and testable without Textual."""

from __future__ import annotations

import subprocess
import sys


def test_sources_model_diagnose_do_not_import_textual():
    code = (
        "import sys, pkgutil, importlib\n"
        "import genai_tui.model, genai_tui.diagnose, genai_tui.config, genai_tui.sources\n"
        "for m in pkgutil.iter_modules(genai_tui.sources.__path__):\n"
        "    importlib.import_module('genai_tui.sources.' + m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('textual', 'rich'))\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"imported: {proc.stdout.strip()}"
