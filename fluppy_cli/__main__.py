"""``python -m fluppy_cli``."""

import sys

from fluppy_cli.cli import main

sys.exit(main())
