"""`python -m streams.cli`: the `megatrading` command without its console script (workers the demo,
the tests and the benchmarks spawn with the interpreter they run on)."""

import sys

from streams.cli import main

sys.exit(main())
