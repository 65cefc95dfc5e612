"""`python -m profiler ...` is `ttft-profile ...` (where the console script is not on PATH)."""
import sys

from profiler.cli import main

sys.exit(main())
