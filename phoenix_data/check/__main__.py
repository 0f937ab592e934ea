"""``python -m phoenix_data.check``: the same as ``phoenix-dataset``."""
import sys

from ..cli import check_main

sys.exit(check_main())
