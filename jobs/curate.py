"""Entry point for `ray job submit`: the curation job.

  ray job submit --working-dir . -- python jobs/curate.py --config jobs/configs/curate.yaml key=value ...

Inside a submitted job RAY_ADDRESS is set, so the job joins the cluster instead of starting
an embedded Ray. Exit codes: 0 done, 1 inputs unaccounted for, 2 bad config.
"""

import sys

from medgen_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["curate", *sys.argv[1:]]))
