"""``python -m rankcore``: the ``rankcore`` command line."""
import sys

from .cli import main

sys.exit(main())
