"""``python -m runtime.devstack toolchain|dev ...``: the developer commands without the engine.

The same commands are reachable as ``arbfleet toolchain ...`` and ``arbfleet dev ...``.
"""

import sys

from runtime.devstack.cli import main

sys.exit(main())
