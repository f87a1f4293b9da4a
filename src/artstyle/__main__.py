"""``python -m artstyle`` (and ``torchrun -m artstyle train ...``) runs the CLI."""

import sys

from .cli import main

sys.exit(main())
