"""The command lines: one module per command, and what they share (``common``).

- ``warm``: ``phoenix-warm-cache`` (the job: ``phoenix_data.warm``);
- ``check``: ``phoenix-dataset`` (the checks: ``phoenix_data.check``);
- ``models``: ``phoenix-models`` (the tasks backend's model bundle).

Only the command lines print (this package, and ``python -m phoenix_data.demo``); nothing below
imports it. ``python -m phoenix_data.cli warm-cache ARGS`` runs a command as its console script does.
"""
from .check import main as check_main
from .models import main as models_main
from .warm import main as warm_main

COMMANDS = {"warm-cache": warm_main, "dataset": check_main, "models": models_main}

__all__ = ["COMMANDS", "check_main", "models_main", "warm_main"]
