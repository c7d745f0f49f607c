import sys

from genai_tui.cli import main

sys.exit(main())
