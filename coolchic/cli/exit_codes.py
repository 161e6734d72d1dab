"""Process exit codes of the ``coolchic`` command (architecture.md, section 3)."""

OK = 0
ERROR = 1
USAGE = 2
BATCH_FAILURES = 3
INTERRUPTED = 130
