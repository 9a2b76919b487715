"""`python -m pioneer_tui` runs the same entry point as the `pioneer-tui` console script."""

import sys

from pioneer_tui.cli import main

sys.exit(main())
