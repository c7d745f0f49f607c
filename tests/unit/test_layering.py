"""The data layer never imports the UI toolkit: sources, model and diagnose stay usable
headless (for `check` in cron) and testable without Textual."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


#: the modules that must work without the UI toolkit (contract 1 in pyproject.toml)
HEADLESS = ("genai_tui.model", "genai_tui.diagnose", "genai_tui.config", "genai_tui.safety",
            "genai_tui.secret", "genai_tui.sources", "genai_tui.engine")


def test_data_layer_imports_without_textual_or_rich():
    """Every module of the engine and the data layer imports with Textual and Rich absent.

    Absent, not merely unimported: httpx imports Rich for its CLI whenever click is
    installed too (import-linter brings click into the test extra), so "rich is in
    sys.modules" says nothing about genai-tui; with both made unimportable, httpx falls
    back on its own and any import of them by genai-tui fails here."""
    code = (
        "import importlib, importlib.abc, pkgutil, sys\n"
        "class Absent(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('textual', 'rich'):\n"
        "            raise ModuleNotFoundError(f'{name} is absent here', name=name)\n"
        "sys.meta_path.insert(0, Absent())\n"
        "def fail(name):\n"
        "    raise\n"
        "names = []\n"
        f"for name in {HEADLESS!r}:\n"
        "    try:\n"
        "        module = importlib.import_module(name)\n"
        "    except ModuleNotFoundError as exc:\n"
        "        if exc.name == name:\n"
        "            continue  # a package that has not landed yet\n"
        "        raise\n"
        "    names.append(name)\n"
        "    if hasattr(module, '__path__'):\n"
        "        names += [m.name for m in pkgutil.walk_packages(module.__path__, name + '.',\n"
        "                                                        onerror=fail)]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('textual', 'rich'))\n"
        "print(len(names), ','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    count, _, bad = proc.stdout.strip().partition(" ")
    assert int(count) >= 10 and bad == "", proc.stdout


def test_import_contracts_hold():
    """pyproject.toml's [tool.importlinter] contracts: the engine and the data layer never
    import Textual, Rich or genai_tui.ui (directly or not); the dashboard never imports
    docker, httpx, psutil or pynvml itself."""
    lint = Path(sys.executable).parent / "lint-imports"
    if not lint.is_file():
        pytest.skip("lint-imports not installed (pip install -e '.[test]' brings import-linter)")
    proc = subprocess.run([str(lint), "--no-cache"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout, proc.stdout[-4000:]
