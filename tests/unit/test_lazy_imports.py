"""The dashboard paints before the heavy libraries load: importing the app (everything the
first frame needs) must not pull in docker-py, httpx, bcrypt, pynvml or prometheus_client;
those load in the engine's worker right after the first paint."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("docker", "httpx", "bcrypt", "pynvml", "prometheus_client", "requests")


def _loaded_after(statement: str) -> list[str]:
    code = (f"{statement}; import sys; "
            f"print(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout.split()


def test_first_frame_imports_none_of_the_heavy_libraries() -> None:
    assert _loaded_after("import genai_tui.ui.app") == []


def test_cli_entry_imports_none_of_the_heavy_libraries() -> None:
    # `genai-tui --help`, `check` and the rest start here: each loads only what it runs
    assert _loaded_after("import genai_tui.cli") == []


def test_token_sources_load_bcrypt_only_when_verifying() -> None:
    assert _loaded_after("import genai_tui.sources.tokens") == []
    assert _loaded_after("from genai_tui.sources.tokens import read; read.bcrypt") == \
        ["bcrypt"]
