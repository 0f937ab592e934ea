"""The exit statuses of the commands, in one place (no imports: the command line reads them first)."""

EXIT_OK = 0  # done, nothing wrong
EXIT_FAILURES = 1  # samples failed (warm-up) or problems found (check): listed
EXIT_USAGE = 2  # bad arguments, or input the command cannot use (no release, a cache of other settings)
EXIT_ABORTED = 3  # the warm-up stopped early for a cause that is no sample's (the disk, the cache): rerun
EXIT_INTERRUPTED = 130  # Ctrl+C: rerun to finish
