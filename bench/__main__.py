"""``python -m bench``: see bench/run.py and bench/README.md."""

import sys

if sys.argv[1:2] == ["results"]:  # what results cost a turn, and a query on a million runs
    from bench.results_bench import main as results_main

    sys.exit(results_main(sys.argv[2:]))

from bench.run import main

sys.exit(main())
