"""The watch-folder daemon behind ``coolchic watch``.

- :mod:`~coolchic.daemon.observer`: watchdog event handler (only queues paths) and its
  supervisor (restarts a dead observer, falls back to polling);
- :mod:`~coolchic.daemon.readiness`: a file is taken when its size and mtime stay unchanged
  for a while and it holds a whole frame;
- :mod:`~coolchic.daemon.journal`: the durable SQLite journal of every file's state;
- :mod:`~coolchic.daemon.service`: the loop that ties them to a worker pool.

Nothing here installs signal handlers or prints: the CLI does (``coolchic.cli.commands.watch``).
"""
