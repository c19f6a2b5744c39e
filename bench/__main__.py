"""``python -m bench``: see bench/run.py and bench/README.md."""

import sys

if sys.argv[1:2] == ["results"]:  # what results cost a turn, and a query on a million runs
    from bench.results_bench import main as results_main

    sys.exit(results_main(sys.argv[2:]))

if sys.argv[1:2] == ["redis"]:  # the scale-out path: the bot on Redis against the naive handler
    from bench.redis_path import main as redis_main

    sys.exit(redis_main(sys.argv[2:]))

if sys.argv[1:2] == ["logs"]:  # a log line's cost, text against JSON (LOG_FORMAT)
    from bench.log_bench import main as logs_main

    sys.exit(logs_main(sys.argv[2:]))

if sys.argv[1:2] in (["all"], ["table"]):  # every part, one table (bench/combined.py)
    from bench.combined import main as combined_main

    sys.exit(combined_main(sys.argv[1:]))

if sys.argv[1:2] == ["broadcast"]:  # broadcasts at a million: memory, CPU per message, pacing, replies meanwhile
    from bench.broadcast_bench import main as broadcast_main

    sys.exit(broadcast_main(sys.argv[2:]))

from bench.run import main

sys.exit(main())
