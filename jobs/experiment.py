"""Entry point for `ray job submit`: one experiment (arms or a sweep -> LoRAs -> Med-VBench -> report).

  ray job submit --working-dir . -- python jobs/experiment.py --config jobs/configs/experiments/rank_sweep.yaml

Exit codes: 0 done, 2 bad config or input (named in the message).
"""

import sys

from medgen_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "run", *sys.argv[1:]]))
