import sys

from personkit.cli import main

sys.exit(main())
