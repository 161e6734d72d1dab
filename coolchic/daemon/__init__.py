"""The watch-folder daemon behind ``coolchic watch``.

- :mod:`~coolchic.daemon.config`: what the daemon is told, and the names of its folders;
- :mod:`~coolchic.daemon.observer`: watchdog event handler (only queues paths) and its
  supervisor (restarts a dead observer, falls back to polling);
- :mod:`~coolchic.daemon.readiness`: a file is taken when its size and mtime stay unchanged
  for a while and it holds a whole frame;
- :mod:`~coolchic.daemon.journal`: the durable SQLite journal of every file's state;
- :mod:`~coolchic.daemon.service`: the loop that ties them to a worker pool (start, recovery,
  drain), built from :mod:`~coolchic.daemon.discovery` (inbox → queue),
  :mod:`~coolchic.daemon.dispatch` (queue → workers → outcome) and
  :mod:`~coolchic.daemon.disposal` (the input once its job ended);
- :mod:`~coolchic.daemon.locks` and :mod:`~coolchic.daemon.orphans`: one daemon per inbox and
  state folder, and no worker of a killed daemon left running.

Nothing here installs signal handlers or prints: the CLI does (``coolchic.cli.commands.watch``).
"""
