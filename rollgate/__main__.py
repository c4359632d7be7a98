"""``python -m rollgate`` is the ``rollgate`` console script."""

import sys

from rollgate.cli import main

sys.exit(main())
