"""``python -m personkit``: the command line (torchrun uses this entry point too)."""

import sys

from personkit.cli import main

if __name__ == "__main__":  # guarded: spawned worker processes re-import this module
    sys.exit(main())
