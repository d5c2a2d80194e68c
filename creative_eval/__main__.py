"""`python -m creative_eval`: the command line."""

import sys

from creative_eval.cli import main

sys.exit(main())
