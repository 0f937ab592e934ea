"""``python -m phoenix_data.warm``: the same as ``phoenix-warm-cache``."""
import sys

from ..cli import warm_main

sys.exit(warm_main())
