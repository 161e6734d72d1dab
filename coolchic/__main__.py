"""``python -m coolchic``: the same entry point as the ``coolchic`` console script."""

from coolchic.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
