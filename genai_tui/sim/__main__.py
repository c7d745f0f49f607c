"""``python -m genai_tui.sim``: run one simulated service."""

import sys

from .server import main

sys.exit(main())
