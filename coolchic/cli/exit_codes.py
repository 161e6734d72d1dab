"""Process exit codes of the ``coolchic`` command (README, "Exit codes")."""

OK = 0
ERROR = 1
USAGE = 2
BATCH_FAILURES = 3
INTERRUPTED = 130
