#!/usr/bin/env python
"""Warm the landmark cache: extract every PHOENIX sample once (see ``phoenix_data.warm`` and ``phoenix_data.cli``).

    python scripts/warm_cache.py --root /data/phoenix2014-release --cache /data/phoenix.lmdb
    python scripts/warm_cache.py --demo
"""
import sys

from phoenix_data.cli.warm import main

if __name__ == "__main__":
    sys.exit(main())
