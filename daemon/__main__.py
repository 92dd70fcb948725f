"""`python -m daemon` is the same as the `stocksync` console script."""

from daemon.cli import main

raise SystemExit(main())
