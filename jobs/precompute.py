"""Entry point for `ray job submit`: the precompute job.

  ray job submit --working-dir . -- python jobs/precompute.py --config jobs/configs/precompute.yaml key=value ...

Inside a submitted job RAY_ADDRESS is set, so the job joins the cluster. Exit codes: 0 done,
2 bad config or bad input (named in the message).
"""

import sys

from medgen_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["precompute", *sys.argv[1:]]))
