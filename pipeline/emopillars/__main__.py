"""`python -m emopillars`: the same command as `emopillars`."""

import sys

from emopillars.cli import main

sys.exit(main())
