"""``python -m netns``: the lab's CLI."""

import sys

from netns.cli import main

sys.exit(main())
