"""Where the dashboard's rules live: styles/*.tcss, one file per panel module and app.tcss.

Every rule is written once, in a .tcss file. The app loads all of them as its CSS_PATH
(the panels' files first, app.tcss last: at equal specificity a later rule wins, so the
app's layout and generic panel chrome win ties, and a state rule such as `GpuPanel.-warn`
wins by being more specific). Each panel also takes its own file as DEFAULT_CSS
(`DEFAULT_CSS = read("gpu.tcss")`), so a panel mounted alone, as the panel tests do,
looks as it did; in the app that copy never decides anything, since app CSS always beats
DEFAULT_CSS.
"""

from __future__ import annotations

from pathlib import Path


def path(name: str = "app.tcss") -> Path:
    """A stylesheet, whether installed (genai_tui.styles) or run from a source tree."""
    try:
        from importlib.resources import files

        found = Path(str(files("genai_tui.styles") / name))
        if found.is_file():
            return found
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "styles" / name


def read(name: str) -> str:
    """A stylesheet's text (for a widget's DEFAULT_CSS)."""
    return path(name).read_text(encoding="utf-8")
