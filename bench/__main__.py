"""`python -m bench`: run the benchmark and print the table."""

from bench.cli import main

raise SystemExit(main())
