"""`python -m stepwise ...` (and `torchrun -m stepwise ...`) run the command line."""

import sys

from stepwise.cli import main

sys.exit(main())
