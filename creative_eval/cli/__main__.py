"""`python -m creative_eval.cli`: the command line."""

import sys

from creative_eval.cli import main

sys.exit(main())
