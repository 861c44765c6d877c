"""medgen_ray: medical video generation systems on Ray."""

import os

# An embedded Ray listens on 127.0.0.1 only if this is set before Ray is first imported; every
# entry point imports this package first (core.cluster.init_ray also enforces it for programs
# that imported Ray earlier).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
