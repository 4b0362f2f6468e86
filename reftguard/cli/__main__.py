"""`python -m reftguard.cli ...` (and `accelerate launch -m reftguard.cli ...`): the `reftguard` command."""
import sys

from reftguard.cli import main

sys.exit(main())
