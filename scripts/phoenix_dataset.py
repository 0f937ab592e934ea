#!/usr/bin/env python
"""Sanity check of a PHOENIX release and its landmark cache before training.

    python scripts/phoenix_dataset.py --root ROOT [--cache CACHE] [--split S] [--release R] [--verify]
                                      [--render ID --out PATH]

Same as the console command ``phoenix-dataset``; the logic lives in ``phoenix_data.check``, the command line in
``phoenix_data.cli``.
"""
import sys

from phoenix_data.cli.check import main

if __name__ == "__main__":
    sys.exit(main())
