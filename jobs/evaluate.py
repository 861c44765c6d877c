"""Entry point for `ray job submit`: Med-VBench.

  ray job submit --working-dir . -- python jobs/evaluate.py --config jobs/configs/evaluate.yaml key=value ...

Exit codes: 0 done, 1 nothing scored, 2 bad config or input (named in the message).
"""

import sys

from medgen_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
