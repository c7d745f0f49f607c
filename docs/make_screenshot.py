"""Regenerate docs/screenshot.svg: the dashboard on the real demo stack (needs Docker).

    python docs/make_screenshot.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genai_tui import config, demo  # noqa: E402
from genai_tui.ui.app import GenaiTui  # noqa: E402


async def shoot(cfg: config.Config, out: Path) -> None:
    app = GenaiTui(cfg)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(45)  # healthchecks settle (flux-1-dev turns unhealthy), probes run
        app.save_screenshot(str(out.name), path=str(out.parent))


def main() -> None:
    out = ROOT / "docs" / "screenshot.svg"
    with tempfile.TemporaryDirectory() as tmp:
        stack = demo.DockerDemo(Path(tmp))
        try:
            cfg = config.load_file(stack.start())
            asyncio.run(shoot(cfg, out))
        finally:
            stack.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
