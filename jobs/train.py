"""Entry point for `ray job submit`: the train job.

  ray job submit --working-dir . -- python jobs/train.py --config jobs/configs/train.yaml key=value ...

Inside a submitted job RAY_ADDRESS is set, so the job joins the cluster. Exit codes: 0 done,
2 bad config or bad input (named in the message).
"""

import sys

from medgen_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
