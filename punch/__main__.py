"""`python -m punch` is `punch`."""

import sys

from punch.cli import main

sys.exit(main())
