"""Run the command line with `python -m clickjax`."""

import sys

from clickjax.cli import main

sys.exit(main())
