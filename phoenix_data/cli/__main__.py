import sys

from . import COMMANDS

if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
    sys.exit(f"usage: python -m phoenix_data.cli {{{','.join(COMMANDS)}}} [ARGS]")
sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
